//! What a server request carries that no one else may read: extra headers (a bearer token,
//! Triton's access token) and the user and password of a server URL. They are sent, and kept out
//! of every message, property read and log line by [`Secrets::redact`].

use std::path::Path;

use super::InferenceError;

/// What replaces a secret in text.
pub const REDACTED: &str = "***";

/// The shortest secret removed wherever it appears in text: a shorter one (a one-letter
/// password) would garble every message; it is still removed from URLs by [`redact_url`].
const MIN_SECRET_LEN: usize = 4;

/// The largest headers file read: headers are a few lines.
const MAX_HEADERS_FILE_BYTES: u64 = 64 * 1024;

/// Extra headers of every request (HTTP headers, gRPC metadata), names in lower case.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RequestHeaders(Vec<(String, String)>);

impl RequestHeaders {
    /// Reads the `headers` property: `name: value` entries separated by `;` (or new lines), or
    /// `@FILE`, a file with one `name: value` per line (for values with `;`, and to keep tokens
    /// off command lines). Blank lines and lines starting with `#` are skipped. An error never
    /// repeats a value.
    pub fn parse(text: &str) -> Result<Self, String> {
        let text = text.trim();
        if let Some(path) = text.strip_prefix('@') {
            let contents = read_headers_file(Path::new(path.trim()))?;
            return Self::parse_entries(contents.lines(), &format!("{}: line", path.trim()));
        }
        Self::parse_entries(text.split([';', '\n']), "entry")
    }

    fn parse_entries<'a>(
        entries: impl Iterator<Item = &'a str>,
        what: &str,
    ) -> Result<Self, String> {
        let mut headers = Vec::new();
        for (index, entry) in entries.enumerate() {
            let entry = entry.trim();
            if entry.is_empty() || entry.starts_with('#') {
                continue;
            }
            let place = format!("{what} {}", index + 1);
            let Some((name, value)) = entry.split_once(':') else {
                return Err(format!(
                    "{place} has no ':' (expected 'name: value', e.g. 'authorization: Bearer ...')"
                ));
            };
            let name = name.trim().to_ascii_lowercase();
            let value = value.trim();
            if name.is_empty() || !name.bytes().all(is_token_byte) {
                return Err(format!(
                    "{place}: '{name}' is not a header name (letters, digits and !#$%&'*+-.^_`|~)"
                ));
            }
            if value.bytes().any(|b| b.is_ascii_control() && b != b'\t') || !value.is_ascii() {
                return Err(format!(
                    "{place}: the value of '{name}' holds a control or non-ASCII character"
                ));
            }
            headers.push((name, value.to_string()));
        }
        Ok(Self(headers))
    }

    pub fn iter(&self) -> impl Iterator<Item = (&str, &str)> {
        self.0
            .iter()
            .map(|(name, value)| (name.as_str(), value.as_str()))
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// The value of `name` (lower case), if set.
    pub fn get(&self, name: &str) -> Option<&str> {
        self.iter().find(|(n, _)| *n == name).map(|(_, v)| v)
    }
}

/// RFC 9110's token characters: what a header name is made of.
fn is_token_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
}

fn read_headers_file(path: &Path) -> Result<String, String> {
    use std::io::Read;
    let file = std::fs::File::open(path)
        .map_err(|e| format!("cannot read the headers file {}: {e}", path.display()))?;
    let mut contents = String::new();
    file.take(MAX_HEADERS_FILE_BYTES + 1)
        .read_to_string(&mut contents)
        .map_err(|e| format!("cannot read the headers file {}: {e}", path.display()))?;
    if contents.len() as u64 > MAX_HEADERS_FILE_BYTES {
        return Err(format!(
            "the headers file {} is larger than {MAX_HEADERS_FILE_BYTES} bytes",
            path.display()
        ));
    }
    Ok(contents)
}

/// The `headers` property as it reads back: a file's name as given, entries with their values
/// replaced by [`REDACTED`] (an entry that does not parse, wholly).
pub fn redacted_headers_property(text: &str) -> String {
    let trimmed = text.trim();
    if trimmed.starts_with('@') {
        return trimmed.to_string();
    }
    trimmed
        .split([';', '\n'])
        .map(str::trim)
        .filter(|entry| !entry.is_empty())
        .map(|entry| match entry.split_once(':') {
            Some((name, _)) => format!("{}: {REDACTED}", name.trim()),
            None => REDACTED.to_string(),
        })
        .collect::<Vec<_>>()
        .join("; ")
}

/// `scheme://user:password@host/...` with the user and password replaced by [`REDACTED`];
/// any other text as it is.
pub fn redact_url(url: &str) -> String {
    match user_info_span(url) {
        Some((start, at)) => format!("{}{REDACTED}{}", &url[..start], &url[at..]),
        None => url.to_string(),
    }
}

/// The user information of a URL (`user:password`), if any.
fn url_user_info(url: &str) -> Option<&str> {
    user_info_span(url).map(|(start, at)| &url[start..at])
}

/// Where a URL's user information starts, and its `@`.
fn user_info_span(url: &str) -> Option<(usize, usize)> {
    let start = url.find("://")? + 3;
    let rest = &url[start..];
    let authority_end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    rest[..authority_end]
        .rfind('@')
        .map(|at| (start, start + at))
}

/// Every secret of one element's server settings, to take out of text.
#[derive(Debug, Clone, Default)]
pub struct Secrets(Vec<String>);

impl Secrets {
    /// The user information of each of `servers` (whole, its password, and both
    /// percent-decoded) and every header value; AWS's secret key and session token from the
    /// environment.
    pub fn new(servers: &[&str], headers: &RequestHeaders) -> Self {
        let mut secrets = Vec::new();
        for user_info in servers.iter().filter_map(|server| url_user_info(server)) {
            let mut these = vec![user_info.to_string()];
            if let Some((_, password)) = user_info.split_once(':') {
                these.push(password.to_string());
            }
            for secret in these.clone() {
                these.push(percent_decoded(&secret));
            }
            secrets.extend(these);
        }
        secrets.extend(headers.iter().map(|(_, value)| value.to_string()));
        for name in ["AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN"] {
            if let Ok(value) = std::env::var(name) {
                secrets.push(value);
            }
        }
        secrets.retain(|secret| secret.len() >= MIN_SECRET_LEN);
        // Longest first, so a secret that contains another goes whole.
        secrets.sort_by_key(|secret| std::cmp::Reverse(secret.len()));
        secrets.dedup();
        Self(secrets)
    }

    /// `text` with every URL's user information and every secret replaced by [`REDACTED`].
    pub fn redact(&self, text: &str) -> String {
        let mut text = text
            .split_inclusive(char::is_whitespace)
            .map(|word| {
                if word.contains("://") && word.contains('@') {
                    redact_url(word)
                } else {
                    word.to_string()
                }
            })
            .collect::<String>();
        for secret in &self.0 {
            if text.contains(secret.as_str()) {
                text = text.replace(secret.as_str(), REDACTED);
            }
        }
        text
    }

    /// `error` with its texts redacted.
    pub fn redact_error(&self, error: InferenceError) -> InferenceError {
        let r = |text: String| self.redact(&text);
        match error {
            InferenceError::ModelLoad { path, reason } => InferenceError::ModelLoad {
                path: r(path),
                reason: r(reason),
            },
            InferenceError::ServerUnusable {
                server,
                model,
                reason,
            } => InferenceError::ServerUnusable {
                server: r(server),
                model: r(model),
                reason: r(reason),
            },
            InferenceError::Shape {
                model,
                found,
                expected,
            } => InferenceError::Shape {
                model: r(model),
                found,
                expected,
            },
            InferenceError::Run(reason) => InferenceError::Run(r(reason)),
            InferenceError::Unavailable {
                reason,
                retry_after,
            } => InferenceError::Unavailable {
                reason: r(reason),
                retry_after,
            },
            other @ (InferenceError::Runtime(_) | InferenceError::Cancelled) => other,
        }
    }
}

/// `%xx` escapes decoded (a URL's user information may carry them); invalid ones kept.
fn percent_decoded(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut decoded = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = |b: u8| (b as char).to_digit(16);
        if bytes[i] == b'%'
            && i + 2 < bytes.len()
            && let (Some(high), Some(low)) = (hex(bytes[i + 1]), hex(bytes[i + 2]))
        {
            decoded.push((high * 16 + low) as u8);
            i += 3;
            continue;
        }
        decoded.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&decoded).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn headers_are_name_value_pairs_separated_by_semicolons() {
        let headers =
            RequestHeaders::parse("Authorization: Bearer abc:def ; host: triton.example").unwrap();
        assert_eq!(headers.get("authorization"), Some("Bearer abc:def"));
        assert_eq!(headers.get("host"), Some("triton.example"));
        assert!(RequestHeaders::parse("").unwrap().is_empty());
    }

    #[test]
    fn bad_headers_are_refused_without_repeating_a_value() {
        let err = RequestHeaders::parse("x-ok: 1; Bearer s3cret-token").unwrap_err();
        assert!(err.contains("entry 2 has no ':'"), "{err}");
        assert!(!err.contains("s3cret"), "{err}");
        let err = RequestHeaders::parse("bad name: v").unwrap_err();
        assert!(err.contains("'bad name' is not a header name"), "{err}");
        assert!(RequestHeaders::parse("x: a\u{7}b").is_err());
    }

    #[test]
    fn headers_come_from_a_file_line_by_line() {
        let path = std::env::temp_dir().join(format!("neuralfx-headers-{}", std::process::id()));
        std::fs::write(
            &path,
            "# for the gateway\nauthorization: Bearer a;b\n\nx-tenant: 7\n",
        )
        .unwrap();
        let headers = RequestHeaders::parse(&format!("@{}", path.display())).unwrap();
        assert_eq!(headers.get("authorization"), Some("Bearer a;b"));
        assert_eq!(headers.get("x-tenant"), Some("7"));
        std::fs::write(&path, "x-tenant 7\n").unwrap();
        let err = RequestHeaders::parse(&format!("@{}", path.display())).unwrap_err();
        assert!(err.contains("line 1 has no ':'"), "{err}");
        std::fs::remove_file(&path).unwrap();
        let err = RequestHeaders::parse("@/no/such/file").unwrap_err();
        assert!(
            err.contains("cannot read the headers file /no/such/file"),
            "{err}"
        );
    }

    #[test]
    fn the_property_reads_back_without_values() {
        assert_eq!(
            redacted_headers_property("authorization: Bearer x; host: h"),
            "authorization: ***; host: ***"
        );
        assert_eq!(redacted_headers_property("@/etc/h"), "@/etc/h");
        assert_eq!(redacted_headers_property("oops"), "***");
    }

    #[test]
    fn urls_lose_their_user_information() {
        assert_eq!(
            redact_url("https://user:pa55word@host:8000/v2"),
            "https://***@host:8000/v2"
        );
        assert_eq!(redact_url("http://host:8000"), "http://host:8000");
        assert_eq!(redact_url("host:8001"), "host:8001");
        assert_eq!(redact_url("http://host/a@b"), "http://host/a@b");
    }

    #[test]
    fn secrets_leave_every_text() {
        let headers = RequestHeaders::parse("authorization: Bearer tok3n-value").unwrap();
        let secrets = Secrets::new(&["http://me:p%40ssw0rd@host:8000"], &headers);
        let text = "http://me:p%40ssw0rd@host:8000/v2/x: refused (p@ssw0rd, Bearer tok3n-value)";
        assert_eq!(
            secrets.redact(text),
            "http://***@host:8000/v2/x: refused (***, ***)"
        );
        let error = secrets.redact_error(InferenceError::Run(text.into()));
        assert!(!error.to_string().contains("ssw0rd") && !error.to_string().contains("tok3n"));
    }
}
