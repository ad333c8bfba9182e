//! `purge-media`: delete every local media item last accessed before a time, in one call.
//!
//! `POST /_synapse/admin/v1/media/delete?before_ts=<ms>[&size_gt=<bytes>][&keep_profiles=false]`
//! -> `{"deleted_media": [media_id, ...], "total": N}`. Synapse compares the last access time
//! (the upload time for media never downloaded), skips quarantined and protected media, and by
//! default keeps media still used as a user's or a room's avatar. The call is synchronous and
//! unpaginated; repeating it deletes nothing more (total 0), so a retry after a timeout is safe.
//!
//! `before_ts` is in milliseconds. A time in seconds passed by mistake means January 1970, which
//! Synapse refuses below 30000000000 (400 `M_INVALID_PARAM`); synbatch refuses it first, and
//! says what the seconds would have meant. Not a row job: one request, then one results line
//! per deleted media id.

use std::path::PathBuf;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use crate::cli::PurgeMediaArgs;
use crate::config::{self, ConfigError};
use crate::confirm;
use crate::executor::{self, Attempt, Limits, Transient};
use crate::homeserver::{DeletedMedia, Homeserver, MediaPurge};
use crate::ops::classify;
use crate::results::{ResultLine, ResultsWriter, Status};

/// Synapse refuses `before_ts` below this (a time in seconds read as milliseconds).
const SYNAPSE_MIN_TS: i64 = 30_000_000_000;
/// Anything before 2000 is a mistake: Matrix media did not exist.
const EARLIEST_TS: i64 = 946_684_800_000;

#[derive(Debug, thiserror::Error, PartialEq)]
pub enum BeforeError {
    #[error(
        "--before {given}: read as milliseconds that is {as_ms}, in 1970, and would delete \
         nothing (Synapse refuses it): it looks like seconds. {given} seconds is {as_s}; pass \
         --before {as_s} (or {given}000)"
    )]
    Seconds {
        given: String,
        as_ms: String,
        as_s: String,
    },
    #[error(
        "--before {given}: that is {at}, before 2000; no Matrix media is that old: check the value"
    )]
    TooOld { given: String, at: String },
    #[error(
        "--before {given}: that is {at}, in the future: every local media item would be \
         deleted. Give a past time (e.g. 90d, or 2024-01-01)"
    )]
    Future { given: String, at: String },
    #[error(
        "--before {given}: not a date (2024-01-01), an RFC 3339 time (2024-01-01T12:00:00Z, \
         2024-01-01T12:00:00+02:00), a duration ago (90d, 12h, 2w) or milliseconds since 1970"
    )]
    Unreadable { given: String },
}

/// Reads `--before` into milliseconds since the epoch; `now_ms` anchors durations.
pub fn parse_before(given: &str, now_ms: i64) -> Result<i64, BeforeError> {
    let text = given.trim();
    let unreadable = || BeforeError::Unreadable {
        given: given.to_string(),
    };
    let ts = if !text.is_empty() && text.bytes().all(|b| b.is_ascii_digit()) {
        let n: i64 = text.parse().map_err(|_| unreadable())?;
        if n < SYNAPSE_MIN_TS {
            return Err(BeforeError::Seconds {
                given: text.to_string(),
                as_ms: show(n),
                as_s: show(n.saturating_mul(1000)),
            });
        }
        n
    } else if text.starts_with(|c: char| c.is_ascii_digit()) && text.contains('-') {
        parse_time(text).ok_or_else(unreadable)?
    } else {
        let ago = humantime::parse_duration(text).map_err(|_| unreadable())?;
        now_ms - i64::try_from(ago.as_millis()).map_err(|_| unreadable())?
    };
    if ts < EARLIEST_TS {
        return Err(BeforeError::TooOld {
            given: given.to_string(),
            at: show(ts),
        });
    }
    // A minute of slack: `--before 0s` on a machine whose clock is a little ahead is "now".
    if ts > now_ms + 60_000 {
        return Err(BeforeError::Future {
            given: given.to_string(),
            at: show(ts),
        });
    }
    Ok(ts)
}

/// `YYYY-MM-DD` (midnight UTC) or `YYYY-MM-DD[T ]HH:MM[:SS[.fff]][Z|±HH:MM]` (UTC without an
/// offset).
fn parse_time(text: &str) -> Option<i64> {
    let num = |s: &str| -> Option<i64> {
        (!s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()))
            .then(|| s.parse().ok())
            .flatten()
    };
    let (date, rest) = text.split_at_checked(10)?;
    let mut parts = date.split('-');
    let (y, m, d) = (
        num(parts.next()?)?,
        num(parts.next()?)?,
        num(parts.next()?)?,
    );
    if date.len() != 10 || !(1..=12).contains(&m) || d < 1 || d > days_in_month(y, m) {
        return None;
    }
    let mut ms = days_from_civil(y, m, d) * 86_400_000;
    if rest.is_empty() {
        return Some(ms);
    }
    let rest = rest.strip_prefix(['T', 't', ' '])?;
    let tz_at = rest.find(['Z', 'z', '+', '-']).unwrap_or(rest.len());
    let (clock, tz) = rest.split_at(tz_at);
    let mut fields = clock.split(':');
    let h = num(fields.next()?)?;
    let min = num(fields.next()?)?;
    let (s, frac) = match fields.next() {
        Some(sec) => match sec.split_once('.') {
            Some((s, f)) => (num(s)?, f),
            None => (num(sec)?, ""),
        },
        None => (0, ""),
    };
    if fields.next().is_some() || h > 23 || min > 59 || s > 60 {
        return None;
    }
    let frac_ms = if frac.is_empty() {
        0
    } else {
        num(frac)?;
        format!("{frac:0<3}")[..3].parse::<i64>().ok()?
    };
    ms += ((h * 60 + min) * 60 + s) * 1000 + frac_ms;
    let offset_min = match tz {
        "" | "Z" | "z" => 0,
        _ => {
            let sign = if tz.starts_with('-') { -1 } else { 1 };
            let (oh, om) = tz[1..].split_once(':')?;
            let (oh, om) = (num(oh)?, num(om)?);
            if oh > 23 || om > 59 {
                return None;
            }
            sign * (oh * 60 + om)
        }
    };
    Some(ms - offset_min * 60_000)
}

fn days_in_month(y: i64, m: i64) -> i64 {
    match m {
        2 if (y % 4 == 0 && y % 100 != 0) || y % 400 == 0 => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

/// Days since 1970-01-01 of a proleptic Gregorian date (H. Hinnant's algorithm).
fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let doy = (153 * ((m + 9) % 12) + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// Milliseconds since the epoch as RFC 3339 UTC.
fn show(ms: i64) -> String {
    match u64::try_from(ms) {
        Ok(ms) => {
            humantime::format_rfc3339_millis(UNIX_EPOCH + Duration::from_millis(ms)).to_string()
        }
        Err(_) => format!("{ms} ms before 1970"),
    }
}

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

/// What the purge will do, in words, for the plan and the confirmation.
fn describe(purge: &MediaPurge, homeserver: &str) -> String {
    let mut what = format!(
        "delete every local media item on {homeserver} last accessed before {} \
         (before_ts={})",
        show(purge.before_ts),
        purge.before_ts
    );
    if let Some(size) = purge.size_gt {
        what.push_str(&format!(" and larger than {size} bytes"));
    }
    what.push_str(if purge.keep_profiles {
        ", keeping user and room avatars"
    } else {
        ", avatars included (--keep-profiles false)"
    });
    what
}

/// The purge job: check the options, connect, say what will happen, ask, send, record.
pub async fn run(args: PurgeMediaArgs) -> Result<u8, ConfigError> {
    config::check(&args.server)?;
    let purge = MediaPurge {
        before_ts: parse_before(&args.before, now_ms())
            .map_err(|e| ConfigError::Usage(e.to_string()))?,
        size_gt: args.size_gt,
        keep_profiles: args.keep_profiles,
    };
    let conn = config::connect(&args.server, 1, true).await?;
    let homeserver = args
        .server
        .homeserver
        .as_deref()
        .unwrap_or("the homeserver");
    let what = describe(&purge, homeserver);
    eprintln!("purge-media will {what}; quarantined and protected media are kept");
    if args.dry_run {
        let mut query = format!("before_ts={}", purge.before_ts);
        if let Some(size) = purge.size_gt {
            query.push_str(&format!("&size_gt={size}"));
        }
        query.push_str(&format!("&keep_profiles={}", purge.keep_profiles));
        println!("POST /_synapse/admin/v1/media/delete?{query}");
        eprintln!("dry run of purge-media: nothing was sent or written");
        return Ok(0);
    }
    confirm::confirm(&what, args.yes).map_err(ConfigError::Usage)?;
    let path = args
        .results
        .clone()
        .unwrap_or_else(|| PathBuf::from("purge-media.results.csv"));
    // Opened before the request: a results file that cannot be written stops the job while
    // nothing is deleted yet.
    let mut writer = ResultsWriter::open(&path, &["media"])
        .map_err(|e| ConfigError::Abort(format!("cannot write the results file: {e}")))?;
    let started = Instant::now();
    let (deleted, attempts) = match send(&conn.hs, &purge, args.retries).await {
        Ok(done) => done,
        Err(Failure::Abort(reason)) => return Err(ConfigError::Abort(reason)),
        Err(Failure::Refused(message)) => {
            eprintln!("synbatch: purge-media failed: {message}");
            return Ok(1);
        }
    };
    let elapsed = started.elapsed();
    let record = |e| ConfigError::Abort(format!("cannot write the results file: {e}"));
    for (i, id) in deleted.deleted_media.iter().enumerate() {
        let uri = format!("mxc://{}/{id}", conn.server_name);
        writer
            .write(&ResultLine {
                row: i as u64 + 1,
                key: format!("purge-media {uri}"),
                status: Status::Ok,
                http_status: Some(200),
                errcode: String::new(),
                message: String::new(),
                attempts,
                duration: elapsed,
                fields: vec![uri],
            })
            .map_err(record)?;
    }
    writer.sync().map_err(record)?;
    eprintln!(
        "purge-media: deleted {} media items in {:.1}s",
        deleted.deleted_media.len().max(deleted.total as usize),
        elapsed.as_secs_f64()
    );
    eprintln!("results: {}", path.display());
    Ok(0)
}

enum Failure {
    /// The whole job cannot run (token refused, server unreachable): exit 3.
    Abort(String),
    /// Synapse refused the request, or the retries ran out: exit 1.
    Refused(String),
}

/// Sends the purge, retrying passing failures: a repeated purge deletes nothing twice.
async fn send(
    hs: &Homeserver,
    purge: &MediaPurge,
    retries: u32,
) -> Result<(DeletedMedia, u32), Failure> {
    let limits = Limits {
        concurrency: 1,
        rate: None,
        retries,
        backoff_base: Duration::from_millis(500),
        backoff_max: Duration::from_secs(30),
    };
    let mut attempts = 0;
    loop {
        attempts += 1;
        let error = match hs.purge_media(purge).await {
            Ok(deleted) => return Ok((deleted, attempts)),
            Err(e) => e,
        };
        let timed_out = matches!(error, crate::homeserver::HsError::Timeout(_));
        let wait = match classify(error) {
            Attempt::Abort(reason) => return Err(Failure::Abort(reason)),
            Attempt::Done(outcome) => {
                return Err(Failure::Refused(format!(
                    "{} {}: {}",
                    outcome.http_status.map_or(String::new(), |s| s.to_string()),
                    outcome.errcode,
                    outcome.message
                )));
            }
            Attempt::Retry { last, kind } => {
                if attempts > retries {
                    return Err(Failure::Refused(format!(
                        "no answer after {attempts} attempts: {}",
                        last.message
                    )));
                }
                if timed_out {
                    eprintln!(
                        "purge-media: no answer within --timeout; trying again (media the \
                         first request deleted will not be listed: raise --timeout for a big purge)"
                    );
                }
                match kind {
                    Transient::RateLimited(Some(after)) => after,
                    _ => executor::backoff(&limits, attempts),
                }
            }
        };
        tokio::time::sleep(wait).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: i64 = 1_767_225_600_000; // 2026-01-01T00:00:00Z

    #[test]
    fn dates_times_and_durations() {
        assert_eq!(parse_before("2024-01-01", NOW), Ok(1_704_067_200_000));
        assert_eq!(
            parse_before("2024-01-01T12:30:00Z", NOW),
            Ok(1_704_067_200_000 + 45_000_000)
        );
        assert_eq!(
            parse_before("2024-01-01T12:30:00.25+02:00", NOW),
            Ok(1_704_067_200_000 + 45_000_000 + 250 - 7_200_000)
        );
        assert_eq!(parse_before("2024-02-29 01:00", NOW), Ok(1_709_168_400_000));
        assert_eq!(parse_before("90d", NOW), Ok(NOW - 90 * 86_400_000));
        assert_eq!(parse_before("0s", NOW), Ok(NOW));
        assert_eq!(parse_before("1704067200000", NOW), Ok(1_704_067_200_000));
    }

    #[test]
    fn refuses_seconds_old_future_and_nonsense() {
        let err = parse_before("1704067200", NOW).unwrap_err();
        let text = err.to_string();
        assert!(matches!(err, BeforeError::Seconds { .. }));
        assert!(
            text.contains("1970") && text.contains("2024-01-01T00:00:00"),
            "{text}"
        );
        assert!(matches!(
            parse_before("1999-12-31", NOW),
            Err(BeforeError::TooOld { .. })
        ));
        assert!(matches!(
            parse_before("2030-01-01", NOW),
            Err(BeforeError::Future { .. })
        ));
        for bad in [
            "yesterday",
            "2024-13-01",
            "2023-02-29",
            "2024-01-01T25:00Z",
            "",
            "-5d",
        ] {
            assert!(
                matches!(parse_before(bad, NOW), Err(BeforeError::Unreadable { .. })),
                "{bad}"
            );
        }
    }
}
