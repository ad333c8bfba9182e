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

use clap::Args as ClapArgs;
use tokio_util::sync::CancellationToken;

use crate::cli::ServerArgs;
use crate::confirm;
use crate::connect;
use crate::executor::{self, Limits, Stop};
use crate::exit::Exit;
use crate::homeserver::{DeletedMedia, Homeserver, HsError, MediaPurge};
use crate::job::{Outcome, classify};
use crate::results::failures::{Failures, Kind};
use crate::results::json::{self, Destination, JsonSummary};
use crate::results::{Key, ResultLine, ResultsWriter, Status};

/// Delete all local media last accessed before a date (admin API; no input file)
#[derive(Debug, ClapArgs)]
#[command(
    long_about = "Delete every local media item last accessed (or, if never downloaded, \
        uploaded) before a time, in one call to the admin API \
        (POST /_synapse/admin/v1/media/delete?before_ts=...).\n\n\
        --before takes a date (2024-01-01, midnight UTC), an RFC 3339 time \
        (2024-01-01T12:00:00+02:00) or a duration ago (90d, 12h, 2w). A bare number is \
        milliseconds since 1970; one that would mean 1970 (seconds passed by mistake) is \
        refused. --size-gt deletes only larger items; profile pictures and room avatars are \
        kept unless --keep-profiles false. Synapse skips quarantined and protected media.\n\n\
        synbatch shows what it will do and asks first (or needs --yes), then writes one \
        results line per deleted media id.",
    after_help = "Examples:\n  \
        synbatch purge-media --before 2024-01-01 --dry-run\n  \
        synbatch purge-media --before 90d --size-gt 10000000 --yes"
)]
pub struct Args {
    /// Delete media last accessed before this: 2024-01-01, 2024-01-01T12:00:00Z, or 90d (ago)
    #[arg(long, value_name = "WHEN")]
    pub before: String,

    /// Only media larger than this many bytes
    #[arg(long, value_name = "BYTES")]
    pub size_gt: Option<u64>,

    /// Keep media used as a user's or room's avatar (false deletes them too)
    #[arg(long, value_name = "BOOL", default_value_t = true, action = clap::ArgAction::Set)]
    pub keep_profiles: bool,

    /// Results file: one line per deleted media id (default: purge-media.results.csv)
    #[arg(short = 'o', long = "results", value_name = "PATH")]
    pub results: Option<PathBuf>,

    /// Show what would be deleted; send nothing
    #[arg(long)]
    pub dry_run: bool,

    /// Do not ask for confirmation
    #[arg(short = 'y', long)]
    pub yes: bool,

    /// Allow a --before less than a day ago (it deletes nearly all local media)
    #[arg(long)]
    pub allow_recent: bool,

    /// Retries after a passing failure (the purge is safe to repeat)
    #[arg(long, value_name = "N", default_value_t = 5, value_parser = crate::cli::retries)]
    pub retries: u32,

    /// Write a JSON summary (media deleted as `ok`, exit code) to FILE, or to stdout with `-`
    #[arg(long, value_name = "FILE|-", value_parser = Destination::parse)]
    pub summary_json: Option<Destination>,

    #[command(flatten)]
    pub server: ServerArgs,
}

/// Synapse refuses `before_ts` below this (a time in seconds read as milliseconds).
const SYNAPSE_MIN_TS: i64 = 30_000_000_000;
/// A purge of media younger than this needs --allow-recent: `--before 0s` would take nearly all.
const FLOOR_MS: i64 = 24 * 60 * 60 * 1000;
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

/// The purge job, and its `--summary-json` however it ends.
pub async fn run(args: Args) -> Result<(), Exit> {
    let clock = json::Clock::start();
    let out = json::open(args.summary_json.as_ref(), &[&results_path(&args)])?;
    let mut summary = JsonSummary::new(json::Source::Run, Some("purge-media"));
    summary.dry_run = args.dry_run;
    let ended = purge(&args, &mut summary).await;
    json::finish(out, summary, &clock, ended)
}

/// Checks the options, connects, says what will happen, asks, sends, records.
async fn purge(args: &Args, summary: &mut JsonSummary) -> Result<(), Exit> {
    connect::check(&args.server)?;
    let now = now_ms();
    let before_ts = parse_before(&args.before, now).map_err(Exit::usage)?;
    if now - before_ts < FLOOR_MS && !args.allow_recent {
        return Err(Exit::usage(format!(
            "--before {}: that is {}, less than a day ago, and would delete nearly every local \
             media item, recent uploads included; give an older time, or add --allow-recent if \
             that is what you mean",
            args.before,
            show(before_ts)
        )));
    }
    let purge = MediaPurge {
        before_ts,
        size_gt: args.size_gt,
        keep_profiles: args.keep_profiles,
    };
    let conn = connect::connect(&args.server, 1, true).await?;
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
        let request = format!("POST /_synapse/admin/v1/media/delete?{query}");
        // stdout holds the summary alone when it goes there.
        match args.summary_json {
            Some(Destination::Stdout) => eprintln!("{request}"),
            _ => println!("{request}"),
        }
        eprintln!("dry run of purge-media: nothing was sent or written");
        return Ok(());
    }
    confirm::confirm(&what, args.yes).map_err(Exit::Usage)?;
    let path = results_path(args);
    // Opened before the request: a results file that cannot be written stops the job while
    // nothing is deleted yet.
    // A file that cannot be opened is bad usage (another job's, a link); one that stops taking
    // lines after the purge is an aborted run.
    let mut writer = ResultsWriter::open(&path, "purge-media", &["media"]).map_err(Exit::usage)?;
    let record = |e| Exit::aborted(format!("cannot write the results file: {e}"));
    summary.set_results(&path);
    let started = Instant::now();
    let mut failures = Failures::default();
    let sent = send(&conn.hs, &purge, args.retries, &mut failures).await;
    if !failures.sorted().is_empty() {
        summary.counts.failed = 1;
        summary.rows = 1;
        summary.set_failures(&failures);
    }
    let (deleted, attempts) = sent?;
    let elapsed = started.elapsed();
    for (i, id) in deleted.deleted_media.iter().enumerate() {
        let uri = format!("mxc://{}/{id}", conn.server_name);
        writer
            .write(&ResultLine {
                row: i as u64 + 1,
                key: Key::new("purge-media", [uri.as_str()]).into_string(),
                status: Status::Ok,
                http_status: Some(200),
                errcode: String::new(),
                cause: None,
                message: String::new(),
                attempts,
                duration: elapsed,
                fields: vec![uri],
            })
            .map_err(record)?;
    }
    writer.sync().map_err(record)?;
    summary.rows = deleted.deleted_media.len() as u64;
    summary.counts.ok = summary.rows;
    eprintln!(
        "purge-media: deleted {} media items in {:.1}s",
        deleted.deleted_media.len().max(deleted.total as usize),
        elapsed.as_secs_f64()
    );
    eprintln!("results: {}", path.display());
    Ok(())
}

fn results_path(args: &Args) -> PathBuf {
    args.results
        .clone()
        .unwrap_or_else(|| PathBuf::from("purge-media.results.csv"))
}

/// Sends the purge under the executor's retry policy: a repeated purge deletes nothing twice.
/// A refusal, or retries run out, is exit 1 (and goes into `failures`); a token or server that
/// cannot do it, exit 3.
async fn send(
    hs: &Homeserver,
    purge: &MediaPurge,
    retries: u32,
    failures: &mut Failures,
) -> Result<(DeletedMedia, u32), Exit> {
    let attempt = || async {
        match hs.purge_media(purge).await {
            Ok(deleted) => Ok(Ok(deleted)),
            Err(e) => {
                if matches!(e, HsError::Timeout(_)) {
                    eprintln!(
                        "purge-media: no answer within --timeout; trying again (media the \
                         first request deleted will not be listed: raise --timeout for a big purge)"
                    );
                }
                Err(classify(e).map(Err))
            }
        }
    };
    let limits = Limits::new(1, None, retries);
    match executor::once(&limits, &CancellationToken::new(), attempt).await {
        Ok((Ok(deleted), attempts)) => Ok((deleted, attempts)),
        Ok((Err(outcome), attempts)) => {
            eprintln!(
                "synbatch: purge-media failed: {}",
                refused(&outcome, attempts)
            );
            let kind = Kind {
                status: Status::Failed,
                http_status: outcome.http_status,
                errcode: outcome.errcode.clone(),
                cause: String::new(),
            };
            failures.add(kind, &outcome.message);
            Err(Exit::RowsFailed)
        }
        Err(Stop::Aborted(reason)) => Err(Exit::Aborted(reason)),
        Err(_) => Err(Exit::Interrupted),
    }
}

fn refused(outcome: &Outcome, attempts: u32) -> String {
    let mut text = format!(
        "{} {}: {}",
        outcome.http_status.map_or(String::new(), |s| s.to_string()),
        outcome.errcode,
        outcome.message
    );
    if attempts > 1 {
        text.push_str(&format!(" (after {attempts} attempts)"));
    }
    text
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
