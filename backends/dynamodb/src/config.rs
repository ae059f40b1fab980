//! The adapter's configuration, read from a `dynamodb://` URL and the standard AWS environment.

use std::fmt;
use std::time::Duration;
use streamstore::implementor::ErrorShorthand;

use streamstore::{Error, Result};
use url::Url;

/// The host that means "Amazon DynamoDB itself" (the regional AWS endpoint), not a local server.
pub const AWS_HOST: &str = "aws";

/// Static AWS credentials. Never shown by `Debug` or in errors.
#[derive(Clone)]
pub struct AwsCredentials {
    /// `AWS_ACCESS_KEY_ID`.
    pub access_key_id: String,
    /// `AWS_SECRET_ACCESS_KEY`.
    pub secret_access_key: String,
    /// `AWS_SESSION_TOKEN`, for temporary credentials.
    pub session_token: Option<String>,
}

impl fmt::Debug for AwsCredentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AwsCredentials").finish_non_exhaustive()
    }
}

impl AwsCredentials {
    /// The standard environment: `AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY` and optionally
    /// `AWS_SESSION_TOKEN`; `None` if the first two are not both set.
    pub fn from_env() -> Option<Self> {
        let var = |k: &str| std::env::var(k).ok().filter(|v| !v.is_empty());
        Some(AwsCredentials {
            access_key_id: var("AWS_ACCESS_KEY_ID")?,
            secret_access_key: var("AWS_SECRET_ACCESS_KEY")?,
            session_token: var("AWS_SESSION_TOKEN"),
        })
    }
}

/// Where and how to connect.
///
/// `dynamodb://127.0.0.1:58000/table?region=us-east-1` talks plain HTTP to a local server (moto,
/// the project's test server); `tls=true` switches to HTTPS. `dynamodb://aws/table?region=...`
/// talks to Amazon DynamoDB's regional endpoint. The region defaults to `AWS_REGION`, then
/// `AWS_DEFAULT_REGION`, then `us-east-1`. Credentials come from the standard environment
/// (`AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY`, `AWS_SESSION_TOKEN`) and never from the URL; a
/// local server without them gets fixed dummy credentials (it does not check signatures).
#[derive(Clone)]
pub struct DynamoDbConfig {
    /// The endpoint URL (`None`: the AWS endpoint of `region`).
    pub endpoint: Option<String>,
    /// The AWS region (signing scope, and the endpoint when `endpoint` is `None`).
    pub region: String,
    table: String,
    /// Credentials (`None`: refused when connecting to AWS).
    pub credentials: Option<AwsCredentials>,
    /// Longest wait for one request's answer; after it the outcome is unknown.
    pub request_timeout: Duration,
    /// Longest wait for a TCP connection.
    pub connect_timeout: Duration,
    /// How often the retention sweeper runs.
    pub sweep_interval: Duration,
    /// The longest pause between two polls of a waiting read.
    pub poll_interval: Duration,
}

impl DynamoDbConfig {
    /// A configuration for `table` at `endpoint` (`None`: AWS), with the standard environment's
    /// region and credentials.
    pub fn new(endpoint: Option<&str>, table: &str) -> Result<Self> {
        validate_table_name(table)?;
        let region = ["AWS_REGION", "AWS_DEFAULT_REGION"]
            .iter()
            .find_map(|k| std::env::var(k).ok().filter(|v| !v.is_empty()))
            .unwrap_or_else(|| "us-east-1".to_owned());
        Ok(DynamoDbConfig {
            endpoint: endpoint.map(str::to_owned),
            region,
            table: table.to_owned(),
            credentials: AwsCredentials::from_env(),
            request_timeout: Duration::from_secs(10),
            connect_timeout: Duration::from_secs(3),
            sweep_interval: Duration::from_secs(1),
            poll_interval: Duration::from_millis(500),
        })
    }

    /// Parses a `dynamodb://host[:port]/table[?region=..&tls=true]` URL. Invalid input is
    /// `InvalidArgument`, and the message never quotes the URL.
    pub fn from_url(url: &str) -> Result<Self> {
        let u = Url::parse(url).map_err(|_| Error::invalid("not a valid dynamodb:// URL"))?;
        if u.scheme() != crate::SCHEME {
            return Err(Error::invalid("a DynamoDB URL starts with dynamodb://"));
        }
        if !u.username().is_empty() || u.password().is_some() {
            return Err(Error::invalid(
                "a dynamodb:// URL carries no credentials: set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY",
            ));
        }
        let host = u
            .host_str()
            .ok_or_else(|| Error::invalid("a dynamodb:// URL needs a host (or `aws`)"))?;
        let table = u.path().trim_start_matches('/');
        let mut tls = false;
        let mut region = None;
        for (k, v) in u.query_pairs() {
            match k.as_ref() {
                "region" => region = Some(v.into_owned()),
                "tls" => {
                    tls = match v.as_ref() {
                        "true" | "1" => true,
                        "false" | "0" => false,
                        _ => return Err(Error::invalid("tls is true or false")),
                    }
                }
                other => {
                    return Err(Error::invalid(format!(
                        "unknown dynamodb:// option `{other}` (known: region, tls)"
                    )))
                }
            }
        }
        let endpoint = if host == AWS_HOST {
            None
        } else {
            let scheme = if tls { "https" } else { "http" };
            Some(match u.port() {
                Some(p) => format!("{scheme}://{host}:{p}"),
                None => format!("{scheme}://{host}"),
            })
        };
        let mut config = DynamoDbConfig::new(endpoint.as_deref(), table)?;
        if let Some(r) = region {
            config.region = r;
        }
        Ok(config)
    }

    /// The table holding every stream of this store.
    pub fn table(&self) -> &str {
        &self.table
    }

    /// The same configuration for another table.
    pub fn with_table(mut self, table: &str) -> Result<Self> {
        validate_table_name(table)?;
        self.table = table.to_owned();
        Ok(self)
    }
}

/// DynamoDB's rule for table names: 3 to 255 of `[A-Za-z0-9_.-]`.
pub fn validate_table_name(name: &str) -> Result<()> {
    let ok = (3..=255).contains(&name.len())
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-'));
    if ok {
        Ok(())
    } else {
        Err(Error::invalid(
            "a DynamoDB table name is 3 to 255 characters of A-Z, a-z, 0-9, '_', '.', '-'",
        ))
    }
}

impl fmt::Debug for DynamoDbConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DynamoDbConfig")
            .field("endpoint", &self.endpoint)
            .field("region", &self.region)
            .field("table", &self.table)
            .field("credentials", &self.credentials.as_ref().map(|_| "<set>"))
            .field("request_timeout", &self.request_timeout)
            .field("connect_timeout", &self.connect_timeout)
            .field("sweep_interval", &self.sweep_interval)
            .field("poll_interval", &self.poll_interval)
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn url_forms_and_debug_hides_credentials() {
        let mut c =
            DynamoDbConfig::from_url("dynamodb://127.0.0.1:58000/my_table?region=eu-west-1")
                .unwrap();
        assert_eq!(c.endpoint.as_deref(), Some("http://127.0.0.1:58000"));
        assert_eq!(c.region, "eu-west-1");
        assert_eq!(c.table(), "my_table");
        c.credentials = Some(AwsCredentials {
            access_key_id: "AKIDSECRETID".into(),
            secret_access_key: "hunter2".into(),
            session_token: Some("tok3n".into()),
        });
        let shown = format!("{c:?}");
        for secret in ["AKIDSECRETID", "hunter2", "tok3n"] {
            assert!(!shown.contains(secret), "{shown}");
        }
        let aws = DynamoDbConfig::from_url("dynamodb://aws/t.x-1?tls=true").unwrap();
        assert_eq!(aws.endpoint, None);
        let tls = DynamoDbConfig::from_url("dynamodb://h:1/abc?tls=true").unwrap();
        assert_eq!(tls.endpoint.as_deref(), Some("https://h:1"));
        for bad in [
            "dynamodb://h:1/ab",
            "dynamodb://h:1/a b c",
            "dynamodb://h:1/",
            "dynamodb://u:p@h:1/table",
            "postgres://h:1/table",
            "dynamodb://h:1/table?colour=red",
        ] {
            assert!(DynamoDbConfig::from_url(bad).is_err(), "{bad}");
        }
    }
}
