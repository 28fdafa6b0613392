//! The audit log (`logging.audit`): JSONL with everything of the access line plus the
//! filter actions and, only with `bodies: true`, the request body as forwarded and the
//! response body as sent (both after redaction, each capped at [`BODY_CAP`] bytes).
//! Size-based rotation with `keep` old files.

use crate::config::AuditConf;
use crate::observe::access_log::AccessRecord;
use crate::observe::log_writer::LogWriter;
use serde::Serialize;

/// Largest body kept in an audit line.
pub const BODY_CAP: usize = 1 << 20;

/// One filter action (name and action, never the matched text).
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct FilterAction {
    pub filter: String,
    pub action: &'static str,
}

#[derive(Serialize)]
struct AuditRecord<'a> {
    #[serde(flatten)]
    access: &'a AccessRecord<'a>,
    filters: &'a [FilterAction],
    #[serde(skip_serializing_if = "Option::is_none")]
    request_body: Option<std::borrow::Cow<'a, str>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    response_body: Option<std::borrow::Cow<'a, str>>,
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    bodies_truncated: bool,
}

fn cap(b: &[u8]) -> &[u8] {
    &b[..b.len().min(BODY_CAP)]
}

/// The audit log writer.
#[derive(Clone)]
pub struct AuditLog {
    writer: LogWriter,
    pub bodies: bool,
}

impl AuditLog {
    pub fn start(conf: Option<&AuditConf>) -> std::io::Result<AuditLog> {
        match conf {
            None => Ok(AuditLog {
                writer: LogWriter::off("audit"),
                bodies: false,
            }),
            Some(c) => Ok(AuditLog {
                writer: LogWriter::start("audit", &c.target, Some(c.rotation))?,
                bodies: c.bodies,
            }),
        }
    }

    pub fn enabled(&self) -> bool {
        self.writer.enabled()
    }

    /// Write one line. Bodies are included only when configured and given.
    pub fn write(
        &self,
        access: &AccessRecord<'_>,
        filters: &[FilterAction],
        request_body: Option<&[u8]>,
        response_body: Option<&[u8]>,
    ) {
        if !self.enabled() {
            return;
        }
        let truncated = self.bodies
            && (request_body.is_some_and(|b| b.len() > BODY_CAP)
                || response_body.is_some_and(|b| b.len() > BODY_CAP));
        let rec = AuditRecord {
            access,
            filters,
            request_body: request_body
                .filter(|_| self.bodies)
                .map(|b| String::from_utf8_lossy(cap(b))),
            response_body: response_body
                .filter(|_| self.bodies)
                .map(|b| String::from_utf8_lossy(cap(b))),
            bodies_truncated: truncated,
        };
        if let Ok(line) = serde_json::to_string(&rec) {
            self.writer.write_line(line);
        }
    }
}
