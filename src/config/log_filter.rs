//! The `log.level` grammar, checked before `serve` installs it.
//!
//! tracing's `EnvFilter` reads any unknown word as a target name, so
//! `verbose` or `warning` would parse and then silence every log line,
//! the start line included. Only this subset is accepted:
//!
//! ```text
//! filter    := directive ("," directive)*        (no spaces)
//! directive := level | target "=" level
//! level     := trace | debug | info | warn | error | off   (any letter case)
//! target    := name ("::" name)*     name := [A-Za-z_][A-Za-z0-9_]*
//! ```

/// What an error message offers instead.
const ACCEPTED: &str = "use one of trace, debug, info, warn, error, off, \
optionally followed by target=level directives, e.g. info,cloakroom=debug";

const LEVELS: &[&str] = &["trace", "debug", "info", "warn", "error", "off"];

/// Checks `text` against the grammar above.
pub fn check(text: &str) -> Result<(), String> {
    for directive in text.split(',') {
        let ok = match directive.split_once('=') {
            Some((target, level)) => is_target(target) && is_level(level),
            None => is_level(directive),
        };
        if !ok {
            return Err(if directive == text {
                format!("{text:?} is not a log level: {ACCEPTED}")
            } else {
                format!("{text:?} is not a log filter ({directive:?} is not a directive): {ACCEPTED}")
            });
        }
    }
    // The grammar is a subset of EnvFilter's; check with it as well.
    tracing_subscriber::EnvFilter::try_new(text)
        .map(drop)
        .map_err(|e| format!("{text:?} is not a log filter ({e}): {ACCEPTED}"))
}

fn is_level(word: &str) -> bool {
    LEVELS.iter().any(|l| l.eq_ignore_ascii_case(word))
}

fn is_target(target: &str) -> bool {
    target.split("::").all(|name| {
        let mut chars = name.chars();
        chars.next().is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
            && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn levels_and_target_directives_are_accepted() {
        for ok in [
            "info",
            "WARN",
            "off",
            "info,cloakroom=debug",
            "warn,hyper::proto=off,cloakroom::access=info",
        ] {
            assert_eq!(check(ok), Ok(()), "{ok}");
        }
    }

    #[test]
    fn words_envfilter_would_take_for_targets_are_refused() {
        for wrong in [
            "verbose",
            "warning",
            "cloakroom",
            "",
            "info,",
            "info,hyper=loud",
            "=info",
            "a-b=info",
            "debug,cloakroom[span]=info",
            "info,hyper = off",
            "info, hyper=off",
        ] {
            let e = check(wrong).unwrap_err();
            assert!(
                e.contains("use one of trace, debug, info, warn, error, off"),
                "{wrong}: {e}"
            );
        }
        assert!(check("info,hyper=loud")
            .unwrap_err()
            .contains("\"hyper=loud\" is not a directive"));
    }
}
