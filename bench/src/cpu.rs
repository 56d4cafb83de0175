//! CPU time, to say where a stream's cycles go: this process (all its threads) and the whole
//! machine. On 2 cores the producer in the container, the engine's copy and the consumer share
//! the same cycles, so a consumer's CPU per byte decides how close it gets to the raw drain.

/// This process's CPU time in milliseconds: the sum over its threads of
/// `/proc/self/task/*/schedstat` (nanoseconds on the CPU; `/proc/self/stat` counts 10 ms ticks).
pub fn process_ms() -> f64 {
    let Ok(tasks) = std::fs::read_dir("/proc/self/task") else {
        return f64::NAN;
    };
    let mut ns = 0u64;
    for task in tasks.flatten() {
        let text = std::fs::read_to_string(task.path().join("schedstat")).unwrap_or_default();
        ns += text
            .split_whitespace()
            .next()
            .and_then(|v| v.parse::<u64>().ok())
            .unwrap_or(0);
    }
    ns as f64 / 1e6
}

/// This process's CPU time in milliseconds, threads that have ended included (`/proc/self/stat`:
/// 10 ms ticks, so only for spans that use much more than that, like a burst of jobs each on a
/// thread of its own).
pub fn process_total_ms() -> f64 {
    let Ok(stat) = std::fs::read_to_string("/proc/self/stat") else {
        return f64::NAN;
    };
    // The command name (field 2) may hold spaces: count from its closing parenthesis.
    let fields: Vec<f64> = stat
        .rsplit_once(')')
        .map(|(_, rest)| rest)
        .unwrap_or("")
        .split_whitespace()
        .filter_map(|v| v.parse().ok())
        .collect();
    match (fields.get(11), fields.get(12)) {
        (Some(u), Some(s)) => (u + s) * 10.0,
        _ => f64::NAN,
    }
}

/// The whole machine's busy CPU time in milliseconds (user, nice, system, irq, softirq of every
/// core, from `/proc/stat`; 10 ms ticks), other tenants included.
pub fn machine_ms() -> f64 {
    let text = std::fs::read_to_string("/proc/stat").unwrap_or_default();
    let fields: Vec<f64> = text
        .lines()
        .next()
        .unwrap_or("")
        .split_whitespace()
        .skip(1)
        .filter_map(|v| v.parse().ok())
        .collect();
    if fields.len() < 7 {
        return f64::NAN;
    }
    (fields[0] + fields[1] + fields[2] + fields[5] + fields[6]) * 10.0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cpu_time_grows_with_work() {
        // Spin until this process has used 30 ms of CPU; on a loaded machine that takes longer
        // than 30 ms of wall time, so the deadline is generous and only a broken reader hits it.
        let (p0, m0) = (process_ms(), machine_ms());
        let mut x = 0u64;
        let t = std::time::Instant::now();
        while process_ms() - p0 < 30.0 && t.elapsed().as_secs() < 10 {
            for _ in 0..100_000 {
                x = x.wrapping_mul(6364136223846793005).wrapping_add(1);
            }
        }
        assert!(x != 1);
        assert!(process_ms() - p0 >= 30.0, "{} ms", process_ms() - p0);
        assert!(machine_ms() >= m0);
    }
}
