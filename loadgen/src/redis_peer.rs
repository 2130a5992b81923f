//! The peer design users would otherwise build, on Redis sorted sets: a publish stores the post
//! and, in the same request, `ZADD`s it to every follower's timeline and trims each with
//! `ZREMRANGEBYRANK` (one pipeline); a read is `ZREVRANGE 0 19` plus an `MGET` of the posts.
//! Follow lists are sets. Scores are publish times in ms (newest first).

use std::time::Duration;

use redis::aio::MultiplexedConnection;

use crate::target::OpError;

/// Entries kept per timeline, as feedline's default cap.
const TIMELINE_CAP: isize = 1000;

/// A connection to a Redis server holding the peer design's keys.
#[derive(Clone)]
pub struct RedisPeer {
    con: MultiplexedConnection,
}

type R<T> = Result<T, OpError>;

impl From<redis::RedisError> for OpError {
    fn from(e: redis::RedisError) -> Self {
        OpError(format!("Redis{:?}", e.kind()))
    }
}

fn timeline(user: u64) -> String {
    format!("tl:{user}")
}

fn post(id: u64) -> String {
    format!("p:{id}")
}

impl RedisPeer {
    /// Connects to `redis://host:port` (one multiplexed, pipelining connection) and empties the
    /// database, so every run starts from the same state.
    pub async fn connect(url: &str) -> anyhow::Result<RedisPeer> {
        let client = redis::Client::open(url)?;
        // The crate's 500 ms response timeout would turn an overloaded peer into errors (and a
        // big FLUSHDB into a failed start): latency is what the report is for.
        let cfg = redis::AsyncConnectionConfig::new()
            .set_connection_timeout(Some(Duration::from_secs(10)))
            .set_response_timeout(Some(Duration::from_secs(60)));
        let mut con = client.get_multiplexed_async_connection_with_config(&cfg).await?;
        redis::cmd("FLUSHDB").query_async::<()>(&mut con).await?;
        Ok(RedisPeer { con })
    }

    /// `INCR`s the user counter and stores the handle.
    pub async fn create_user(&self, handle: String) -> R<u64> {
        let mut con = self.con.clone();
        let id: u64 = redis::cmd("INCR").arg("next:user").query_async(&mut con).await?;
        redis::cmd("SET")
            .arg(format!("u:{id}"))
            .arg(handle)
            .query_async::<()>(&mut con)
            .await?;
        Ok(id)
    }

    /// Adds or removes both directions of an edge (old timeline entries stay, as in the classic
    /// design).
    pub async fn relate(&self, follow: bool, follower: u64, followee: u64) -> R<()> {
        let op = if follow { "SADD" } else { "SREM" };
        redis::pipe()
            .cmd(op)
            .arg(format!("fr:{followee}"))
            .arg(follower)
            .ignore()
            .cmd(op)
            .arg(format!("fg:{follower}"))
            .arg(followee)
            .ignore()
            .query_async::<()>(&mut self.con.clone())
            .await?;
        Ok(())
    }

    /// Stores the post, then pushes it to the author's and every follower's timeline.
    pub async fn publish(&self, author: u64, text: &str, now_ms: u64) -> R<u64> {
        let mut con = self.con.clone();
        let id: u64 = redis::cmd("INCR").arg("next:post").query_async(&mut con).await?;
        let followers: Vec<u64> = redis::pipe()
            .cmd("SET")
            .arg(post(id))
            .arg(format!("{author}|{text}"))
            .ignore()
            .cmd("SMEMBERS")
            .arg(format!("fr:{author}"))
            .query_async::<(Vec<u64>,)>(&mut con)
            .await?
            .0;
        let mut p = redis::pipe();
        for r in followers.into_iter().chain(std::iter::once(author)) {
            p.cmd("ZADD").arg(timeline(r)).arg(now_ms).arg(id).ignore();
            p.cmd("ZREMRANGEBYRANK")
                .arg(timeline(r))
                .arg(0)
                .arg(-(TIMELINE_CAP + 1))
                .ignore();
        }
        p.query_async::<()>(&mut con).await?;
        Ok(id)
    }

    /// Deletes the post; reads skip entries whose post is gone.
    pub async fn delete(&self, post_id: u64) -> R<()> {
        redis::cmd("DEL")
            .arg(post(post_id))
            .query_async::<()>(&mut self.con.clone())
            .await?;
        Ok(())
    }

    /// Whether `post` is in `reader`'s timeline at any rank (and not deleted).
    pub async fn seen(&self, reader: u64, post_id: u64) -> R<bool> {
        let (score, exists): (Option<f64>, bool) = redis::pipe()
            .cmd("ZSCORE")
            .arg(timeline(reader))
            .arg(post_id)
            .cmd("EXISTS")
            .arg(post(post_id))
            .query_async(&mut self.con.clone())
            .await?;
        Ok(score.is_some() && exists)
    }

    /// The first `page` entries of each reader's timeline whose posts still exist.
    pub async fn read_many(&self, readers: &[u64], page: u32) -> R<Vec<Vec<u64>>> {
        let mut con = self.con.clone();
        let mut p = redis::pipe();
        for &r in readers {
            p.cmd("ZREVRANGE").arg(timeline(r)).arg(0).arg(page as i64 - 1);
        }
        let ids: Vec<Vec<u64>> = p.query_async(&mut con).await?;
        let keys: Vec<String> = ids.iter().flatten().map(|&i| post(i)).collect();
        if keys.is_empty() {
            return Ok(ids);
        }
        let bodies: Vec<Option<Vec<u8>>> = redis::cmd("MGET").arg(&keys).query_async(&mut con).await?;
        let mut live = bodies.into_iter();
        Ok(ids
            .into_iter()
            .map(|v| v.into_iter().filter(|_| matches!(live.next(), Some(Some(_)))).collect())
            .collect())
    }
}
