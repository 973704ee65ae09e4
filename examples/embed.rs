//! Embedding the gateway in a program that is not async: a plain loop calls `poll`, prints
//! the events, and another thread broadcasts into a session through a handle.
//!
//! ```text
//! cargo run --example embed
//! ```
//! Connect a client, authenticate with `dev-token-change-me`, create session `lobby`, and it
//! receives a `broadcast` every two seconds.

use std::time::Duration;

use gateway::AuthToken;
use gateway::{Config, Gateway};
use serde_json::json;

fn main() -> Result<(), gateway::Error> {
    let config = Config {
        port: 0,
        auth_tokens: vec![AuthToken {
            user: "dev".into(),
            secret: "dev-token-change-me".into(),
        }],
        ..Config::default()
    };
    let mut gw = Gateway::bind(config)?;
    println!("embedded gateway listening on {}", gw.url());

    // A custom message type, handled on the loop's thread.
    gw.register_handler("whoami", |ctx, _msg| {
        let reply = json!({ "clientId": ctx.client_id(), "userId": ctx.user_id() });
        ctx.reply("whoami_result", reply);
    })?;

    let handle = gw.handle();
    std::thread::spawn(move || {
        for tick in 0u64.. {
            std::thread::sleep(Duration::from_secs(2));
            if handle
                .broadcast_to_session("lobby", json!({ "tick": tick }))
                .is_err()
            {
                break; // the gateway stopped
            }
        }
    });

    while !gw.is_stopped() {
        gw.poll(Some(Duration::from_millis(100)))?;
        while let Some(event) = gw.next_event() {
            println!("event: {event:?}");
        }
    }
    Ok(())
}
