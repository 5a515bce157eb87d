//! One run of a job at a time, whatever SQS delivers: a lease per job in DynamoDB.
//!
//! SQS delivers a message at least once and, now and then, twice at the same moment (two
//! receivers get it before either hides it; the emulator does it too, about one message
//! in a few hundred under concurrent receives). Two runs of one deliver job read the same
//! users as not yet final and message each of them twice; two runs of one expansion page
//! enqueue its users' jobs twice. So the worker takes the job's lease before running it:
//! one item per job in its request's partition (`sk` = `run#{job id}`), put on condition
//! that no run holds it, holding an owner token and the time the lease ends. A run that
//! finds the lease held puts its job back until then, and its message is done with: if
//! the run holding it finishes, the copy finds every user final and does nothing; if it
//! died, the copy runs once the lease has ended. The lease outlasts any run (an invocation
//! ends at its function's timeout) and is given back when the run ends; its item expires
//! with its request's (TTL).
//!
//! Jobs that are redelivered one after another (a failed or timed-out run) need none of
//! this: their users' outcome markers tell the next run who is final.

use crate::requests::expires_at;
use crate::{get_n, n, s, store_error, Aws};
use aws_sdk_dynamodb::operation::delete_item::DeleteItemError;
use aws_sdk_dynamodb::operation::put_item::PutItemError;
use herald_core::domain::{now_ms, Job};
use herald_core::StoreError;
use std::time::Duration;

/// A job's lease, held by this run until [`Aws::end_run`].
#[derive(Debug)]
pub struct JobRun {
    request_id: String,
    job_id: String,
    owner: String,
}

/// What taking a job's lease found.
#[derive(Debug)]
pub enum RunClaim {
    /// This run holds the lease.
    Held(JobRun),
    /// Another run holds it for this long yet.
    Busy(Duration),
}

impl Aws {
    /// Take `job`'s lease for `lease`, unless another run holds it.
    pub async fn start_run(&self, job: &Job, lease: Duration) -> Result<RunClaim, StoreError> {
        let request_id = job.request_id.as_str();
        let key = self.request_key(request_id, &run_sk(&job.id));
        let owner = herald_core::domain::new_id();
        let now = now_ms();
        let until = now.saturating_add(lease.as_millis() as i64);
        let mut item = key.clone();
        item.insert("owner".into(), s(&owner));
        item.insert("until".into(), n(until));
        item.insert("expires_at".into(), expires_at(now));
        let put = self
            .dynamodb
            .put_item()
            .table_name(&self.settings.requests_table)
            .set_item(Some(item))
            .condition_expression("attribute_not_exists(sk) OR #until < :now")
            .expression_attribute_names("#until", "until")
            .expression_attribute_values(":now", n(now))
            .return_values_on_condition_check_failure(
                aws_sdk_dynamodb::types::ReturnValuesOnConditionCheckFailure::AllOld,
            )
            .send()
            .await;
        match put {
            Ok(_) => Ok(RunClaim::Held(JobRun {
                request_id: request_id.to_string(),
                job_id: job.id.clone(),
                owner,
            })),
            Err(e) => match e.as_service_error() {
                Some(PutItemError::ConditionalCheckFailedException(failed)) => {
                    let held_until = failed.item.as_ref().map(|i| get_n(i, "until"));
                    // An emulator that does not return the item: the whole lease.
                    let left = held_until.map_or(lease.as_millis() as i64, |t| t - now);
                    Ok(RunClaim::Busy(Duration::from_millis(left.max(1) as u64)))
                }
                _ => Err(store_error(e)),
            },
        }
    }

    /// Give back the lease `run` holds (unless it has ended and another run took it).
    pub async fn end_run(&self, run: JobRun) -> Result<(), StoreError> {
        let deleted = self
            .dynamodb
            .delete_item()
            .table_name(&self.settings.requests_table)
            .set_key(Some(
                self.request_key(&run.request_id, &run_sk(&run.job_id)),
            ))
            .condition_expression("#owner = :owner")
            .expression_attribute_names("#owner", "owner")
            .expression_attribute_values(":owner", s(&run.owner))
            .send()
            .await;
        match deleted {
            Ok(_) => Ok(()),
            Err(e) => match e.as_service_error() {
                Some(DeleteItemError::ConditionalCheckFailedException(_)) => Ok(()),
                _ => Err(store_error(e)),
            },
        }
    }
}

/// The sort key of a job's lease.
fn run_sk(job_id: &str) -> String {
    format!("run#{job_id}")
}
