//! A room-sorted file is run with every room in flight at once (Synapse serialises membership
//! changes per room): a mock server records the order in which join requests arrive, and every
//! row still ends with its own line.

use std::collections::HashMap;
use std::time::Duration;

use crate::common::{self, finish, results, synbatch, write};
use serde_json::json;
use wiremock::matchers::{method, path_regex};
use wiremock::{Mock, ResponseTemplate};

const ROOMS: [&str; 3] = ["!aaa:mock.test", "!bbb:mock.test", "!ccc:mock.test"];

#[tokio::test(flavor = "multi_thread")]
async fn a_room_sorted_file_is_interleaved_and_every_row_recorded() {
    let server = common::mock_admin_homeserver().await;
    Mock::given(method("GET"))
        .and(path_regex(r"^/_synapse/admin/v1/rooms/[^/]+/members$"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({"members": [], "total": 0})))
        .mount(&server)
        .await;
    // Slow enough that several joins are in flight together.
    Mock::given(method("POST"))
        .and(path_regex(r"^/_synapse/admin/v1/join/.+$"))
        .respond_with(
            ResponseTemplate::new(200)
                .set_body_json(json!({"room_id": "!x:mock.test"}))
                .set_delay(Duration::from_millis(30)),
        )
        .mount(&server)
        .await;
    let dir = tempfile::tempdir().unwrap();
    let per_room = 30;
    let mut body = String::from("user,room\n");
    for room in ROOMS {
        for i in 0..per_room {
            body.push_str(&format!("@u{i}:mock.test,{room}\n"));
        }
    }
    write(dir.path(), "sorted.csv", &body);
    let url = server.uri();
    let path = dir.path().to_path_buf();
    let run = tokio::task::spawn_blocking(move || {
        let output = synbatch()
            .current_dir(&path)
            .env("SYNBATCH_TOKEN", "mock-token")
            .args(["join", "sorted.csv", "--homeserver", &url, "-j", "6"])
            .output()
            .unwrap();
        finish(output, Some("mock-token"))
    })
    .await
    .unwrap();
    assert_eq!(run.code, 0, "{}", run.stderr);

    let joins: Vec<String> = server
        .received_requests()
        .await
        .unwrap()
        .iter()
        .filter(|r| r.method.as_str() == "POST")
        .map(|r| crate::chaos_proxy::percent_decode(r.url.path()))
        .map(|p| p.trim_start_matches("/_synapse/admin/v1/join/").to_string())
        .collect();
    assert_eq!(joins.len(), 3 * per_room, "{joins:?}");
    // In file order the rooms would change twice, and the last room would start 61st.
    let changes = joins.windows(2).filter(|w| w[0] != w[1]).count();
    assert!(changes > 30, "rooms changed {changes} times: {joins:?}");
    let first_of_last = joins.iter().position(|r| r == ROOMS[2]).unwrap();
    assert!(
        first_of_last < 10,
        "the third room began at {first_of_last}: {joins:?}"
    );

    // Whatever order they finished in, each row has its own final line, with its own fields.
    let lines = results(&dir.path().join("sorted.results.csv"));
    assert_eq!(lines.len(), 3 * per_room);
    let mut by_row: HashMap<usize, (String, String)> = HashMap::new();
    for line in &lines {
        assert_eq!(line["status"], "ok", "{line:?}");
        let row: usize = line["row"].parse().unwrap();
        by_row.insert(row, (line["user"].clone(), line["room"].clone()));
    }
    for (n, room) in ROOMS.iter().enumerate() {
        for i in 0..per_room {
            let row = 1 + n * per_room + i;
            let want = (format!("@u{i}:mock.test"), room.to_string());
            assert_eq!(by_row.get(&row), Some(&want), "row {row}");
        }
    }
}
