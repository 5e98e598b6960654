//! The `log` section: the format of log lines and which of them are written.

use serde_json::Value;

use super::log_filter;
use super::node::{from_text, Cursor, Fields, FromNode, Reported};

#[derive(Debug, Clone)]
pub struct LogConfig {
    pub format: LogFormat,
    pub level: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    /// Human-readable on a terminal, JSON otherwise.
    Auto,
    Json,
    Text,
}

// === impl LogConfig ===

impl Default for LogConfig {
    fn default() -> Self {
        Self {
            format: LogFormat::Auto,
            level: "info".into(),
        }
    }
}

impl FromNode for LogConfig {
    fn from_node(node: &Value, at: &mut Cursor<'_>) -> Result<Self, Reported> {
        let d = Self::default();
        let mut f = Fields::open(node, at)?;
        let format = f.or("format", d.format, at);
        let level = f.or("level", d.level, at);
        f.finish(at);
        if let Some(Err(reason)) = level.as_deref().map(log_filter::check) {
            at.error_at("level", reason);
        }
        Ok(LogConfig {
            format: format.ok_or(Reported)?,
            level: level.ok_or(Reported)?,
        })
    }
}

from_text!(LogFormat, |text| match text {
    "auto" => Ok(LogFormat::Auto),
    "json" => Ok(LogFormat::Json),
    "text" => Ok(LogFormat::Text),
    _ => Err(format!("{text:?} is not one of auto, json, text")),
});
