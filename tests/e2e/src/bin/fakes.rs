//! `scripts/dev --fakes`: the e2e suite's fakes of Evolution API, OpenAI and Anthropic as a
//! standalone process, so a newcomer can post a fixture payload with curl and watch the reply
//! arrive at the fake Evolution.
//!
//! `fakes ENV_FILE` starts the three fakes on free loopback ports, writes
//! `EVOLUTION_API_URL`, `OPENAI_BASE_URL` and `ANTHROPIC_BASE_URL` to ENV_FILE (one
//! `NAME=value` per line), then prints one line per request each fake receives until it is
//! stopped.

use std::time::{Duration, Instant};

use e2e::fakes::{Fake, Kind};

fn main() {
    let Some(env_file) = std::env::args().nth(1) else {
        eprintln!(
            "usage: fakes ENV_FILE   (writes the fakes' URLs to ENV_FILE, then logs requests)"
        );
        std::process::exit(2);
    };
    let start = |kind| {
        Fake::start(kind).unwrap_or_else(|e| {
            eprintln!("fakes: cannot start the {kind:?} fake: {e}");
            std::process::exit(1);
        })
    };
    let fakes = [
        ("evolution", start(Kind::Evolution)),
        ("openai", start(Kind::OpenAi)),
        ("anthropic", start(Kind::Anthropic)),
    ];
    let env = format!(
        "EVOLUTION_API_URL={}\nOPENAI_BASE_URL={}/v1\nANTHROPIC_BASE_URL={}\n",
        fakes[0].1.url(),
        fakes[1].1.url(),
        fakes[2].1.url()
    );
    if let Err(e) = std::fs::write(&env_file, &env) {
        eprintln!("fakes: cannot write {env_file}: {e}");
        std::process::exit(1);
    }
    for (name, fake) in &fakes {
        println!("fake {name} on {}", fake.url());
    }
    let mut seen = [0usize; 3];
    let started = Instant::now();
    loop {
        std::thread::sleep(Duration::from_millis(200));
        for (i, (name, fake)) in fakes.iter().enumerate() {
            let all = fake.received_with("");
            for (at, r) in all.iter().skip(seen[i]) {
                println!(
                    "[{:>7.1}s] fake {name}: {} {} {}",
                    at.duration_since(started).as_secs_f64(),
                    r.method,
                    r.path,
                    r.body
                );
            }
            seen[i] = all.len();
        }
    }
}
