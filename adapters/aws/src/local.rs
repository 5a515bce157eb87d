//! Local stacks on emulators (feature `local`): Herald's tables created from the
//! definitions in `template.yaml` itself, and a job queue with its dead-letter queue, so
//! that tests and local runs cannot drift from what is deployed.

use crate::{store_error, Aws};
use aws_sdk_dynamodb::types::{
    AttributeDefinition, BillingMode, GlobalSecondaryIndex, KeySchemaElement, KeyType, Projection,
    ProjectionType, ScalarAttributeType, TimeToLiveSpecification,
};
use aws_sdk_sqs::types::QueueAttributeName;
use herald_core::StoreError;
use yaml_rust2::{Yaml, YamlLoader};

fn bad(what: &str) -> StoreError {
    StoreError::new(format!("template.yaml: {what}"))
}

/// Create the three tables (named as `aws.settings` says) from `template` (the text of
/// template.yaml), and a job queue `{prefix}-jobs` whose messages move to `{prefix}-dlq`
/// after `max_receive` receives; `aws.settings.queue_url` and `dlq_url` are set to them.
pub async fn provision(
    aws: &mut Aws,
    template: &str,
    prefix: &str,
    max_receive: u32,
) -> Result<(), StoreError> {
    let docs = YamlLoader::load_from_str(template).map_err(StoreError::new)?;
    let resources = &docs.first().ok_or_else(|| bad("empty"))?["Resources"];
    for (resource, table) in [
        ("UsersTable", aws.settings.users_table.clone()),
        ("EventsTable", aws.settings.events_table.clone()),
        ("RequestsTable", aws.settings.requests_table.clone()),
    ] {
        create_table(&aws.dynamodb, &resources[resource]["Properties"], &table).await?;
    }
    let dlq = aws
        .sqs
        .create_queue()
        .queue_name(format!("{prefix}-dlq"))
        .send()
        .await
        .map_err(store_error)?;
    let dlq_url = dlq.queue_url().unwrap_or_default().to_string();
    let dlq_arn = queue_arn(aws, &dlq_url).await?;
    let redrive =
        serde_json::json!({"deadLetterTargetArn": dlq_arn, "maxReceiveCount": max_receive});
    aws.settings.queue_url = job_queue(aws, &format!("{prefix}-jobs"), &redrive).await?;
    aws.settings.dlq_url = dlq_url;
    Ok(())
}

/// [`provision`] in the shape template.yaml deploys: besides, a queue of transactional
/// jobs `{prefix}-transactional-jobs` with the same dead-letter queue, set as
/// `aws.settings.transactional_queue_url`.
pub async fn provision_with_lanes(
    aws: &mut Aws,
    template: &str,
    prefix: &str,
    max_receive: u32,
) -> Result<(), StoreError> {
    provision(aws, template, prefix, max_receive).await?;
    let dlq_arn = queue_arn(aws, &aws.settings.dlq_url).await?;
    let redrive =
        serde_json::json!({"deadLetterTargetArn": dlq_arn, "maxReceiveCount": max_receive});
    let url = job_queue(aws, &format!("{prefix}-transactional-jobs"), &redrive).await?;
    aws.settings.transactional_queue_url = Some(url);
    Ok(())
}

/// The ARN of the queue at `url`.
async fn queue_arn(aws: &Aws, url: &str) -> Result<String, StoreError> {
    let attributes = aws
        .sqs
        .get_queue_attributes()
        .queue_url(url)
        .attribute_names(QueueAttributeName::QueueArn)
        .send()
        .await
        .map_err(store_error)?;
    Ok(attributes
        .attributes()
        .and_then(|a| a.get(&QueueAttributeName::QueueArn))
        .cloned()
        .unwrap_or_default())
}

/// Create a job queue named `name` with `redrive`; its URL.
async fn job_queue(
    aws: &Aws,
    name: &str,
    redrive: &serde_json::Value,
) -> Result<String, StoreError> {
    let queue = aws
        .sqs
        .create_queue()
        .queue_name(name)
        .attributes(QueueAttributeName::VisibilityTimeout, "30")
        .attributes(QueueAttributeName::RedrivePolicy, redrive.to_string())
        .send()
        .await
        .map_err(store_error)?;
    Ok(queue.queue_url().unwrap_or_default().to_string())
}

fn text<'a>(yaml: &'a Yaml, what: &str) -> Result<&'a str, StoreError> {
    yaml.as_str()
        .ok_or_else(|| bad(&format!("{what} is missing")))
}

fn list<'a>(yaml: &'a Yaml, what: &str) -> Result<&'a Vec<Yaml>, StoreError> {
    yaml.as_vec()
        .ok_or_else(|| bad(&format!("{what} is missing")))
}

fn key_schema(yaml: &Yaml) -> Result<Vec<KeySchemaElement>, StoreError> {
    list(yaml, "KeySchema")?
        .iter()
        .map(|key| {
            KeySchemaElement::builder()
                .attribute_name(text(&key["AttributeName"], "AttributeName")?)
                .key_type(KeyType::from(text(&key["KeyType"], "KeyType")?))
                .build()
                .map_err(StoreError::new)
        })
        .collect()
}

/// Create table `name` from its `Properties` in template.yaml.
async fn create_table(
    client: &aws_sdk_dynamodb::Client,
    properties: &Yaml,
    name: &str,
) -> Result<(), StoreError> {
    let mut create = client
        .create_table()
        .table_name(name)
        .billing_mode(BillingMode::from(text(
            &properties["BillingMode"],
            "BillingMode",
        )?))
        .set_key_schema(Some(key_schema(&properties["KeySchema"])?));
    for attribute in list(&properties["AttributeDefinitions"], "AttributeDefinitions")? {
        create = create.attribute_definitions(
            AttributeDefinition::builder()
                .attribute_name(text(&attribute["AttributeName"], "AttributeName")?)
                .attribute_type(ScalarAttributeType::from(text(
                    &attribute["AttributeType"],
                    "AttributeType",
                )?))
                .build()
                .map_err(StoreError::new)?,
        );
    }
    for index in properties["GlobalSecondaryIndexes"]
        .as_vec()
        .into_iter()
        .flatten()
    {
        let projection = &index["Projection"];
        let mut p = Projection::builder().projection_type(ProjectionType::from(text(
            &projection["ProjectionType"],
            "ProjectionType",
        )?));
        for attribute in projection["NonKeyAttributes"]
            .as_vec()
            .into_iter()
            .flatten()
        {
            p = p.non_key_attributes(text(attribute, "NonKeyAttributes")?);
        }
        create = create.global_secondary_indexes(
            GlobalSecondaryIndex::builder()
                .index_name(text(&index["IndexName"], "IndexName")?)
                .set_key_schema(Some(key_schema(&index["KeySchema"])?))
                .projection(p.build())
                .build()
                .map_err(StoreError::new)?,
        );
    }
    create.send().await.map_err(store_error)?;
    if let Some(attribute) = properties["TimeToLiveSpecification"]["AttributeName"].as_str() {
        let ttl = TimeToLiveSpecification::builder()
            .attribute_name(attribute)
            .enabled(true)
            .build()
            .map_err(StoreError::new)?;
        client
            .update_time_to_live()
            .table_name(name)
            .time_to_live_specification(ttl)
            .send()
            .await
            .map_err(store_error)?;
    }
    Ok(())
}
