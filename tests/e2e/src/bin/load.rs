//! `scripts/bench-edge`'s load generator (wrk's job, without a system package): C kept-alive
//! HTTP/1.1 connections, one thread each, sending GETs back to back for a fixed time. Each
//! connection is a different client (`X-Forwarded-For: 198.18.<n>.<n>`, read only through a
//! trusted loopback proxy). Prints one JSON line: requests per second, p50 and p99 latency in
//! ms, and the count of non-2xx answers.
//!
//! `load URL [--connections C] [--seconds S] [--warmup S] [--fresh] [--header 'K: V']...
//! [--body-file F]`; `--fresh` opens a new connection per request (latency without the
//! keep-alive path); `--body-file` POSTs the file's JSON instead of a GET, with every `{n}` in it
//! replaced by a number no other request of the run gets (a new message id per delivery).

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

struct Args {
    host: String,
    path: String,
    connections: usize,
    seconds: f64,
    warmup: f64,
    fresh: bool,
    headers: String,
    body: Option<String>,
}

fn parse() -> Result<Args, String> {
    let mut it = std::env::args().skip(1);
    let url = it
        .next()
        .ok_or("usage: load URL [--connections C] [--seconds S] [--warmup S] [--fresh] [--header 'K: V']...")?;
    let rest = url
        .strip_prefix("http://")
        .ok_or("only http:// URLs (loopback benchmarks)")?;
    let (host, path) = match rest.find('/') {
        Some(i) => (rest[..i].to_owned(), rest[i..].to_owned()),
        None => (rest.to_owned(), "/".to_owned()),
    };
    let mut a = Args {
        host,
        path,
        connections: 16,
        seconds: 10.0,
        warmup: 2.0,
        fresh: false,
        headers: String::new(),
        body: None,
    };
    while let Some(flag) = it.next() {
        let mut value = || it.next().ok_or(format!("{flag} needs a value"));
        match flag.as_str() {
            "--connections" => a.connections = value()?.parse().map_err(|e| format!("{e}"))?,
            "--seconds" => a.seconds = value()?.parse().map_err(|e| format!("{e}"))?,
            "--warmup" => a.warmup = value()?.parse().map_err(|e| format!("{e}"))?,
            "--fresh" => a.fresh = true,
            "--body-file" => {
                let file = value()?;
                let body = std::fs::read_to_string(&file).map_err(|e| format!("{file}: {e}"))?;
                if !body.contains("{n}") {
                    return Err(format!(
                        "{file} has no {{n}}: every request would be the same"
                    ));
                }
                a.body = Some(body);
            }
            "--header" => {
                let h = value()?;
                if !h.contains(':') || h.contains('\r') || h.contains('\n') {
                    return Err(format!("--header wants 'Name: value', not {h:?}"));
                }
                a.headers.push_str(&h);
                a.headers.push_str("\r\n");
            }
            other => return Err(format!("unknown argument {other}")),
        }
    }
    if a.body.is_some() && a.connections > 100 {
        return Err("--body-file allows at most 100 connections (two digits of {n})".into());
    }
    Ok(a)
}

/// One request on `conn`; the status, or an error (the connection is then dropped).
fn request(conn: &mut BufReader<TcpStream>, head: &[u8]) -> Result<u16, String> {
    conn.get_mut().write_all(head).map_err(|e| e.to_string())?;
    let mut line = String::new();
    conn.read_line(&mut line).map_err(|e| e.to_string())?;
    let status: u16 = line
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| format!("bad status line {line:?}"))?;
    let mut length = 0usize;
    let mut chunked = false;
    loop {
        line.clear();
        conn.read_line(&mut line).map_err(|e| e.to_string())?;
        let l = line.trim_end();
        if l.is_empty() {
            break;
        }
        let lower = l.to_ascii_lowercase();
        if let Some(v) = lower.strip_prefix("content-length:") {
            length = v.trim().parse().unwrap_or(0);
        }
        if lower.starts_with("transfer-encoding:") && lower.contains("chunked") {
            chunked = true;
        }
    }
    if chunked {
        loop {
            line.clear();
            conn.read_line(&mut line).map_err(|e| e.to_string())?;
            let size = usize::from_str_radix(line.trim(), 16).map_err(|e| e.to_string())?;
            let mut buf = vec![0u8; size + 2];
            conn.read_exact(&mut buf).map_err(|e| e.to_string())?;
            if size == 0 {
                break;
            }
        }
    } else {
        let mut buf = vec![0u8; length];
        conn.read_exact(&mut buf).map_err(|e| e.to_string())?;
    }
    Ok(status)
}

fn main() {
    let a = match parse() {
        Ok(a) => a,
        Err(e) => {
            eprintln!("load: {e}");
            std::process::exit(2);
        }
    };
    let start = Instant::now();
    let measure_from = start + Duration::from_secs_f64(a.warmup);
    let end = measure_from + Duration::from_secs_f64(a.seconds);
    let threads: Vec<_> = (0..a.connections)
        .map(|i| {
            let (host, path, fresh) = (a.host.clone(), a.path.clone(), a.fresh);
            let extra = a.headers.clone();
            let body = a.body.clone();
            std::thread::spawn(move || {
                let method = if body.is_some() { "POST" } else { "GET" };
                let head = format!(
                    "{method} {path} HTTP/1.1\r\nHost: {host}\r\nX-Forwarded-For: 198.18.{}.{}\r\n{extra}{}",
                    i / 250,
                    i % 250 + 1,
                    if fresh { "Connection: close\r\n" } else { "" }
                );
                // A GET is the same every time, made once; a POST's body has an `{n}` unique
                // in the run: the mode (fresh or not), the connection and the request's number.
                let get = format!("{head}\r\n");
                let mut seq = 0u64;
                let mut post = move |template: &str| {
                    seq += 1;
                    let n = format!("{}{:02}{:07}", u8::from(fresh), i % 100, seq);
                    let body = template.replace("{n}", &n);
                    format!(
                        "{head}Content-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
                        body.len()
                    )
                };
                let mut lat: Vec<f64> = Vec::new();
                let (mut non2xx, mut errors) = (0u64, 0u64);
                let mut conn: Option<BufReader<TcpStream>> = None;
                loop {
                    let now = Instant::now();
                    if now >= end {
                        break;
                    }
                    if conn.is_none() {
                        match TcpStream::connect(&host) {
                            Ok(s) => {
                                let _ = s.set_nodelay(true);
                                conn = Some(BufReader::new(s));
                            }
                            Err(_) => {
                                errors += 1;
                                std::thread::sleep(Duration::from_millis(10));
                                continue;
                            }
                        }
                    }
                    let Some(c) = conn.as_mut() else { continue };
                    let posted;
                    let sent = match &body {
                        None => get.as_bytes(),
                        Some(template) => {
                            posted = post(template);
                            posted.as_bytes()
                        }
                    };
                    match request(c, sent) {
                        Ok(status) => {
                            if now >= measure_from {
                                lat.push(now.elapsed().as_secs_f64() * 1000.0);
                                if !(200..300).contains(&status) {
                                    non2xx += 1;
                                }
                            }
                            if fresh {
                                conn = None;
                            }
                        }
                        Err(_) => {
                            errors += 1;
                            conn = None;
                        }
                    }
                }
                (lat, non2xx, errors)
            })
        })
        .collect();
    let mut lat = Vec::new();
    let (mut non2xx, mut errors) = (0u64, 0u64);
    for t in threads {
        if let Ok((l, n, e)) = t.join() {
            lat.extend(l);
            non2xx += n;
            errors += e;
        }
    }
    lat.sort_by(|x, y| x.total_cmp(y));
    let pct = |p: f64| {
        if lat.is_empty() {
            0.0
        } else {
            lat[((lat.len() as f64 * p) as usize).min(lat.len() - 1)]
        }
    };
    println!(
        "{{\"requests\":{},\"rps\":{:.0},\"p50_ms\":{:.3},\"p99_ms\":{:.3},\"non2xx\":{},\"errors\":{}}}",
        lat.len(),
        lat.len() as f64 / a.seconds,
        pct(0.5),
        pct(0.99),
        non2xx,
        errors
    );
}
