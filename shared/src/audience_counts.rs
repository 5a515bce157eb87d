//! How many users `everyone` of a bot means, kept a while: what the ETA of a scheduled
//! `everyone` counts before the request reads its users. A count reads every user of the
//! bot (on DynamoDB, a `COUNT` query per shard), so each bot and platform is counted at
//! most once per [`COUNTED_FOR`] in a process.

use crate::domain::PlatformFilter;
use crate::error::StoreError;
use crate::ids::BotId;
use std::collections::HashMap;
use std::future::Future;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// How long a count is used before it is counted again.
pub const COUNTED_FOR: Duration = Duration::from_secs(60);

/// Counts of `everyone` per bot and platform, each kept for [`COUNTED_FOR`].
#[derive(Default)]
pub struct AudienceCounts {
    counted: Mutex<HashMap<(BotId, String), (Instant, u64)>>,
}

impl AudienceCounts {
    /// How many users `everyone` on `platform` means for `bot`: the count kept, or
    /// `counting`'s when there is none younger than [`COUNTED_FOR`].
    pub async fn count(
        &self,
        bot: &BotId,
        platform: &PlatformFilter,
        counting: impl Future<Output = Result<u64, StoreError>>,
    ) -> Result<u64, StoreError> {
        let key = (bot.clone(), platform_name(platform).to_string());
        let kept = self
            .counted
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(&key)
            .filter(|(at, _)| at.elapsed() < COUNTED_FOR)
            .map(|(_, n)| *n);
        if let Some(n) = kept {
            return Ok(n);
        }
        let n = counting.await?;
        let mut counted = self.counted.lock().unwrap_or_else(|e| e.into_inner());
        counted.retain(|_, (at, _)| at.elapsed() < COUNTED_FOR);
        counted.insert(key, (Instant::now(), n));
        Ok(n)
    }
}

fn platform_name(platform: &PlatformFilter) -> &str {
    match platform {
        PlatformFilter::Any => "any",
        PlatformFilter::Only(platform) => platform,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_count_is_kept_per_bot_and_platform() {
        let counts = AudienceCounts::default();
        let bot: BotId = "shop".parse().unwrap();
        let tg = PlatformFilter::Only("tg".into());
        assert_eq!(counts.count(&bot, &tg, async { Ok(5) }).await.unwrap(), 5);
        // Kept: not counted again.
        let again = counts.count(&bot, &tg, async { panic!("counted again") });
        assert_eq!(again.await.unwrap(), 5);
        // Another platform is another count; a failed count is not kept.
        let any = PlatformFilter::Any;
        let failed = counts.count(&bot, &any, async { Err(StoreError::new("down")) });
        assert!(failed.await.is_err());
        assert_eq!(counts.count(&bot, &any, async { Ok(7) }).await.unwrap(), 7);
    }
}
