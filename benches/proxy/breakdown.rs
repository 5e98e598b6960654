//! A per-request CPU breakdown of one profile, from its folded stacks
//! (`inferno-collapse-perf`'s output: `frame;frame;… weight` per line).
//!
//! A sample counts once, for the innermost frame that names a part of the
//! request's path: the steps and layers nest (each calls the next), so
//! counting every frame would count the session step inside the edge
//! again. System calls count by call and by side (the client's connection
//! or an upstream connection); on loopback a send carries the TCP stack of
//! both ends, so it is most of the kernel's share. Allocator and
//! `memcpy` time stays with the caller; two extra lines say how much of
//! the whole it was.

/// The parts, by a substring of a frame's name. Order matters only within
/// one frame (the first rule it matches).
const PARTS: &[(&str, &[&str])] = &[
    ("session: cookie unseal (AES-GCM)", &["KeyRing::unseal"]),
    ("session: store key (HMAC)", &["record::store_key"]),
    (
        "session: record open (AES-GCM, decode, drop)",
        &[
            "Record::open",
            "drop_in_place<cloakroom::session::record::Record>",
        ],
    ),
    ("session: local cache", &["CachedStore"]),
    ("session: Redis client", &["RedisStore", "redis::"]),
    ("session: load, expiry, touch, revocation watch", &["Sessions>::"]),
    ("CSRF check", &["CsrfGuard"]),
    ("token step (bearer header)", &["UserToken"]),
    ("metrics", &["cloakroom::metrics", "Counted"]),
    (
        "upstream: forward, header hygiene, pool",
        &["cloakroom::upstream"],
    ),
    ("edge (tower-http layers)", &["tower_http"]),
    (
        "routing, steps' boxes and clones",
        &["cloakroom::app", "cloakroom::stack", "tower::"],
    ),
    (
        "hyper: HTTP/1 (parse, encode, buffers)",
        &["hyper::", "hyper_util::"],
    ),
    ("server: connection lanes, idle timers", &["cloakroom::server"]),
    ("tokio: scheduling, timers, park", &["tokio::"]),
];

/// A stack through one of these frames drives an upstream connection: its
/// hyper frames are the client's, not the server's.
const UPSTREAM_CONNECTION: &[&str] = &[
    "upstream::pool::Pool::connect",
    "hyper::client::conn",
    "hyper_util::client::legacy",
];

/// A stack through one of these frames serves a client's connection.
const SERVER_CONNECTION: &[&str] = &["cloakroom::server", "hyper::server::conn", "hyper_util::server"];

/// Prints the breakdown of `folded` as a Markdown table, scaled to
/// `cpu_us` microseconds of CPU per request.
pub fn print(name: &str, folded: &str, cpu_us: f64) {
    let mut parts: Vec<(String, u64)> = Vec::new();
    let (mut total, mut allocator, mut copies) = (0u64, 0u64, 0u64);
    for line in folded.lines() {
        let Some((stack, weight)) = line.rsplit_once(' ') else {
            continue;
        };
        let Ok(weight) = weight.parse::<u64>() else {
            continue;
        };
        let frames: Vec<&str> = stack.split(';').collect();
        total += weight;
        if frames
            .iter()
            .any(|f| f.starts_with("mi_") || f.starts_with("_mi_"))
        {
            allocator += weight;
        }
        if frames
            .last()
            .is_some_and(|f| f.contains("memmove") || f.contains("memcpy"))
        {
            copies += weight;
        }
        let part = part_of(&frames);
        match parts.iter_mut().find(|(p, _)| *p == part) {
            Some((_, w)) => *w += weight,
            None => parts.push((part, weight)),
        }
    }
    if total == 0 {
        return;
    }
    parts.sort_by_key(|part| std::cmp::Reverse(part.1));
    let share = |w: u64| w as f64 / total as f64;
    println!("\n{name}: CPU per request by part ({cpu_us:.1} µs in all)\n");
    println!("| part | share | µs per request |\n|---|---:|---:|");
    for (part, w) in &parts {
        println!(
            "| {part} | {:.1} % | {:.1} |",
            100.0 * share(*w),
            cpu_us * share(*w)
        );
    }
    for (what, w) in [
        ("allocator (malloc, free), across the parts", allocator),
        ("memcpy, across the parts", copies),
    ] {
        println!(
            "| *of which {what}* | {:.1} % | {:.1} |",
            100.0 * share(w),
            cpu_us * share(w)
        );
    }
}

/// The part one sample belongs to.
fn part_of(frames: &[&str]) -> String {
    let upstream = through(frames, UPSTREAM_CONNECTION);
    // The system call is named by its libc wrapper, the frame before the
    // kernel's entry (the `__x64_sys_*` frames are often inlined away).
    if let Some(entry) = frames.iter().position(|f| f.starts_with("entry_SYSCALL_64")) {
        let wrapper = entry.checked_sub(1).map_or("", |i| frames[i]);
        let call = if wrapper.contains("write") || wrapper.contains("send") {
            "send (write, writev)"
        } else if wrapper.contains("recv") || wrapper.contains("read") {
            "receive (recv, read)"
        } else if wrapper.contains("epoll") {
            return "kernel: epoll_wait".into();
        } else {
            return "kernel: other system calls".into();
        };
        let peer = match (upstream, through(frames, SERVER_CONNECTION)) {
            (true, _) => "upstream side",
            (false, true) => "client side",
            (false, false) => "side not in the stack",
        };
        return format!("kernel: {call}, {peer}");
    }
    if frames
        .iter()
        .any(|f| f.starts_with("asm_") || f.contains("irqentry"))
    {
        return "kernel: interrupts, rescheduling".into();
    }
    for frame in frames.iter().rev() {
        let Some((part, _)) = PARTS
            .iter()
            .find(|(_, markers)| markers.iter().any(|m| frame.contains(m)))
        else {
            continue;
        };
        if upstream && part.starts_with("hyper:") {
            return "hyper: upstream connection (client, its task)".into();
        }
        return (*part).to_owned();
    }
    "other (libc, std, the bench's own proxy)".into()
}

/// Whether the stack passes through a frame naming one of `markers`.
fn through(frames: &[&str], markers: &[&str]) -> bool {
    frames.iter().any(|f| markers.iter().any(|m| f.contains(m)))
}
