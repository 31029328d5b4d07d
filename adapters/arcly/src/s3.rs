//! S3-compatible object storage (`s3://BUCKET/PREFIX` with `--s3-endpoint`):
//! a [`StorageBackend`] whose writes and deletes are S3 requests signed
//! with AWS Signature V4 by `rusty-s3` (presigned, path-style URLs, so any
//! S3 implementation takes them), sent over plain HTTP by the gateway's
//! one HTTP exchange ([`crate::http_call`]) on tokio's blocking pool. A
//! request that fails is sent again after 0.5 s, doubling to 8 s, for as
//! long as the caller waits: the recorder that waits falls behind its
//! stream (and marks the gap) rather than the stream waiting for it.

use std::io;
use std::path::Path;
use std::time::Duration;

use arcly_tokio::StorageBackend;
use bytes::Bytes;
use rusty_s3::{Bucket, Credentials, S3Action, UrlStyle};

/// Where and how to reach the store.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct S3Settings {
    /// `http://HOST[:PORT]`.
    pub endpoint: String,
    /// The region the signatures name.
    pub region: String,
    /// The access key id.
    pub access_key: String,
    /// The secret key.
    pub secret_key: String,
}

/// `s3://BUCKET[/PREFIX]`: the bucket and the prefix (no slashes around).
pub fn parse_target(v: &str) -> Result<(String, String), String> {
    let rest = v
        .strip_prefix("s3://")
        .ok_or_else(|| format!("takes s3://BUCKET[/PREFIX], not {v:?}"))?;
    let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
    let ok = |c: char| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '.';
    if !(3..=63).contains(&bucket.len()) || !bucket.chars().all(ok) {
        return Err(format!(
            "{bucket:?} is not a bucket name (3 to 63 of a-z, 0-9, '-', '.')"
        ));
    }
    Ok((bucket.into(), prefix.trim_matches('/').into()))
}

/// One bucket, under a prefix.
#[derive(Clone, Debug)]
pub struct S3Storage {
    bucket: Bucket,
    creds: Credentials,
    prefix: String,
    host: String,
    port: u16,
    /// How long one request may take.
    timeout: Duration,
}

impl S3Storage {
    /// Storage in `bucket` under `prefix`, through `s`.
    pub fn new(s: &S3Settings, bucket: &str, prefix: &str) -> Result<S3Storage, String> {
        let url: url::Url = s
            .endpoint
            .parse()
            .map_err(|e| format!("{:?} is not a URL: {e}", s.endpoint))?;
        if url.scheme() != "http" {
            return Err(format!(
                "{:?}: only http:// endpoints are served yet (a local store, or one behind a TLS proxy)",
                s.endpoint
            ));
        }
        let host = url
            .host_str()
            .ok_or("the endpoint has no host")?
            .to_string();
        let port = url.port_or_known_default().unwrap_or(80);
        let bucket = Bucket::new(url, UrlStyle::Path, bucket.to_string(), s.region.clone())
            .map_err(|e| format!("bucket {bucket:?}: {e}"))?;
        Ok(S3Storage {
            bucket,
            creds: Credentials::new(s.access_key.clone(), s.secret_key.clone()),
            prefix: prefix.to_string(),
            host,
            port,
            timeout: Duration::from_secs(10),
        })
    }

    fn object(&self, key: &str) -> String {
        if self.prefix.is_empty() {
            key.to_string()
        } else {
            format!("{}/{key}", self.prefix)
        }
    }

    /// One request: `method` on the presigned `url`, with `body`.
    async fn send(&self, method: &str, url: url::Url, body: Bytes) -> io::Result<()> {
        let target = match url.query() {
            Some(q) => format!("{}?{q}", url.path()),
            None => url.path().to_string(),
        };
        let host = match url.port() {
            Some(p) => format!("{}:{p}", self.host),
            None => self.host.clone(),
        };
        let mut request = format!(
            "{method} {target} HTTP/1.1\r\nHost: {host}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
            body.len()
        )
        .into_bytes();
        request.extend_from_slice(&body);
        let (h, port, timeout) = (self.host.clone(), self.port, self.timeout);
        let answer = tokio::task::spawn_blocking(move || {
            crate::http_call::call(&h, port, &request, timeout, Some(64 << 10))
        })
        .await
        .map_err(io::Error::other)?;
        match answer {
            Ok(a) if (200..300).contains(&a.status) => Ok(()),
            Ok(a) => Err(io::Error::other(format!(
                "{method} answered {}: {}",
                a.status,
                String::from_utf8_lossy(&a.body[..a.body.len().min(300)])
            ))),
            Err(crate::http_call::CallError::TooLarge) => {
                Err(io::Error::other(format!("{method}: an answer too large")))
            }
            Err(crate::http_call::CallError::Failed(e)) => Err(io::Error::other(e)),
        }
    }

    /// Makes the bucket if it is not there (a store that has it answers
    /// 409, which is fine); an error says why it could not.
    pub async fn ensure_bucket(&self) -> Result<(), String> {
        let url = self.bucket.create_bucket(&self.creds).sign(SIGNED_FOR);
        match self.send("PUT", url, Bytes::new()).await {
            Ok(()) => Ok(()),
            Err(e) if e.to_string().contains("answered 409") => Ok(()),
            Err(e) => Err(format!("bucket {}: {e}", self.bucket.name())),
        }
    }

    /// [`send`](Self::send) until it succeeds, signing each try afresh.
    async fn retried(
        &self,
        method: &str,
        sign: impl Fn() -> url::Url,
        body: Bytes,
    ) -> io::Result<()> {
        let mut wait = Duration::from_millis(500);
        loop {
            match self.send(method, sign(), body.clone()).await {
                Ok(()) => return Ok(()),
                // Refused for good (a key or a signature the store does not
                // take, a bucket of someone else's): no second try.
                Err(e) if permanent(&e) => return Err(e),
                Err(e) => {
                    tracing::warn!("object store: {e}; again in {} ms", wait.as_millis());
                    if e.to_string().contains("NoSuchBucket") {
                        // Made now if the store could not make it at start.
                        let _ = self.ensure_bucket().await;
                    }
                    tokio::time::sleep(wait).await;
                    wait = (wait * 2).min(Duration::from_secs(8));
                }
            }
        }
    }
}

/// Whether the store refused for good: a 4xx answer other than a missing
/// bucket (made, then tried again), a time-out (408) or too many requests
/// (429).
fn permanent(e: &io::Error) -> bool {
    let text = e.to_string();
    let status = text
        .split(" answered ")
        .nth(1)
        .and_then(|r| r.get(..3))
        .and_then(|c| c.parse::<u16>().ok());
    matches!(status, Some(400..=499))
        && !matches!(status, Some(408 | 429))
        && !text.contains("NoSuchBucket")
}

/// Presigned URLs hold this long (a try signs its own).
const SIGNED_FOR: Duration = Duration::from_secs(300);

impl StorageBackend for S3Storage {
    async fn put(&self, key: &str, data: Bytes) -> io::Result<()> {
        let object = self.object(key);
        let sign = || {
            self.bucket
                .put_object(Some(&self.creds), &object)
                .sign(SIGNED_FOR)
        };
        self.retried("PUT", sign, data).await
    }

    async fn get(&self, _key: &str) -> io::Result<Bytes> {
        Err(io::Error::new(
            io::ErrorKind::Unsupported,
            "reading back from S3 is not served",
        ))
    }

    async fn delete(&self, key: &str) -> io::Result<()> {
        let object = self.object(key);
        let sign = || {
            self.bucket
                .delete_object(Some(&self.creds), &object)
                .sign(SIGNED_FOR)
        };
        self.retried("DELETE", sign, Bytes::new()).await
    }

    async fn list(&self, _prefix: &str) -> io::Result<Vec<String>> {
        Err(io::Error::new(
            io::ErrorKind::Unsupported,
            "listing S3 is not served",
        ))
    }

    async fn put_file(&self, key: &str, path: &Path) -> io::Result<()> {
        let data = tokio::fs::read(path).await?;
        self.put(key, Bytes::from(data)).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// AWS's published example of a presigned URL (Signature V4, query
    /// string authentication): GET examplebucket/test.txt, 24 May 2013,
    /// for a day, signed as the gateway signs its requests.
    #[test]
    fn signatures_match_the_aws_documentation_example() {
        let bucket = Bucket::new(
            "https://s3.amazonaws.com"
                .parse()
                .unwrap_or_else(|e| panic!("{e}")),
            UrlStyle::VirtualHost,
            "examplebucket",
            "us-east-1",
        )
        .unwrap_or_else(|e| panic!("{e}"));
        let creds = Credentials::new(
            "AKIAIOSFODNN7EXAMPLE",
            "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY",
        );
        let when = jiff::Timestamp::from_second(1_369_353_600).unwrap_or_else(|e| panic!("{e}"));
        let url = bucket
            .get_object(Some(&creds), "test.txt")
            .sign_with_time(Duration::from_secs(86_400), &when);
        assert_eq!(
            url.as_str(),
            "https://examplebucket.s3.amazonaws.com/test.txt?X-Amz-Algorithm=AWS4-HMAC-SHA256\
             &X-Amz-Credential=AKIAIOSFODNN7EXAMPLE%2F20130524%2Fus-east-1%2Fs3%2Faws4_request\
             &X-Amz-Date=20130524T000000Z&X-Amz-Expires=86400&X-Amz-SignedHeaders=host\
             &X-Amz-Signature=aeeed9bbccd4d02ee5c0109b86d86835f995330da4c265957d157751f604d404"
        );
    }

    #[test]
    fn refusals_for_good_are_not_tried_again() {
        let e = |t: &str| io::Error::other(t.to_string());
        assert!(permanent(&e(
            "PUT answered 403: <Code>SignatureDoesNotMatch</Code>"
        )));
        assert!(!permanent(&e(
            "PUT answered 404: <Code>NoSuchBucket</Code>"
        )));
        assert!(!permanent(&e("PUT answered 503: slow down")));
        assert!(!permanent(&e("PUT answered 429: too many")));
        assert!(!permanent(&e("connection refused")));
    }

    #[test]
    fn targets_and_endpoints() {
        assert_eq!(
            parse_target("s3://hls-out/live/edge1"),
            Ok(("hls-out".into(), "live/edge1".into()))
        );
        assert_eq!(parse_target("s3://rec"), Ok(("rec".into(), String::new())));
        for bad in ["http://b/p", "s3://", "s3://Up/x", "s3://a/x"] {
            assert!(parse_target(bad).is_err(), "{bad}");
        }
        let s = |endpoint: &str| S3Settings {
            endpoint: endpoint.into(),
            region: "us-east-1".into(),
            access_key: "k".into(),
            secret_key: "s".into(),
        };
        let st = S3Storage::new(&s("http://127.0.0.1:8333"), "rec", "a/b")
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!((st.host.as_str(), st.port), ("127.0.0.1", 8333));
        assert_eq!(st.object("live/x/seg1.m4s"), "a/b/live/x/seg1.m4s");
        let url = st
            .bucket
            .put_object(Some(&st.creds), "a/b/k")
            .sign(SIGNED_FOR);
        assert!(
            url.as_str()
                .starts_with("http://127.0.0.1:8333/rec/a/b/k?X-Amz-Algorithm=AWS4-HMAC-SHA256"),
            "{url}"
        );
        assert!(S3Storage::new(&s("https://s3.amazonaws.com"), "rec", "").is_err());
    }
}
