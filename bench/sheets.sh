#!/usr/bin/env bash
# sheets.sh — reading a 100,000-row HR export as CSV, .xlsx and .ods: the same data, three files.
#
# Measures (median of ROUNDS, default 3): wall time and peak RSS (/usr/bin/time %M) of
#   synbatch create-users SHEET --localpart-from email --dry-run --server-name bench.local
# which reads, binds and plans every row (and sends nothing), for SHEET = hr-100000.csv,
# .xlsx and .ods. The files hold `Employee ID,Name,Email,Dept`, one unique person a row; the
# workbooks are written from the CSV by examples/bench_workbook.rs (rust_xlsxwriter, and the
# tests' .ods writer).
# Target: memory bounded for 100,000 rows (reported; no fixed figure).
#
# Run:    bash bench/sheets.sh
# Needs:  cargo; installs time (apt) if missing. No network.
set -euo pipefail
source "$(dirname "$0")/lib.sh"

N=${N:-100000}
ROUNDS=${ROUNDS:-3}
need /usr/bin/time:time
build
CSV=$WORK/hr-$N.csv
if [[ ! -s $WORK/hr-$N.ods ]]; then
    awk -v n="$N" 'BEGIN { print "Employee ID,Name,Email,Dept"; for (i = 1; i <= n; i++) printf "%d,Person %d Surname,person.%d@example.org,Dept %d\n", 100000 + i, i, i, i % 40 }' >"$CSV"
    log "writing the workbooks"
    (cd "$REPO" && cargo run --release -q --example bench_workbook -- "$CSV" "$WORK/hr-$N.xlsx" "$WORK/hr-$N.ods")
fi
machine_info
printf '%-6s %10s %12s %12s %12s\n' format bytes wall_s peak_rss_mb rows
for ext in csv xlsx ods; do
    file=$WORK/hr-$N.$ext
    walls=() rsss=()
    for r in $(seq "$ROUNDS"); do
        read -r wall _ _ rss code < <(measure "$WORK/sheets-$ext-$r.time" \
            "$SYNBATCH" create-users "$file" --localpart-from email --dry-run --server-name bench.local -q)
        # The dry run exits 0 with every row planned; its last line counts them.
        [[ $code == 0 ]] || { log "$ext: exit $code"; cat "$WORK/sheets-$ext-$r.time.log" >&2; exit 1; }
        rows=$(grep -o "$N rows" "$WORK/sheets-$ext-$r.time.log" | head -1 | cut -d' ' -f1)
        [[ $rows == "$N" ]] || { log "$ext: not $N rows planned"; tail -3 "$WORK/sheets-$ext-$r.time.log" >&2; exit 1; }
        walls+=("$wall") rsss+=("$rss")
    done
    printf '%-6s %10s %12s %12.1f %12s\n' "$ext" "$(stat -c %s "$file")" \
        "$(printf '%s\n' "${walls[@]}" | median)" \
        "$(printf '%s\n' "${rsss[@]}" | median | awk '{ print $1 / 1024 }')" "$rows"
done
