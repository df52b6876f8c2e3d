//! client-go's `ExponentialBackoffManager` as the reflector uses it: 800 ms doubling to 30 s,
//! jittered, reset after 2 minutes without a backoff.

use std::time::Duration;

use tokio::time::Instant;

/// Jittered exponential backoff that resets after a healthy period.
#[derive(Debug, Clone)]
pub struct BackoffManager {
    initial: Duration,
    max: Duration,
    factor: f64,
    jitter: f64,
    reset_after: Duration,
    current: Duration,
    last: Option<Instant>,
}

impl Default for BackoffManager {
    /// The reflector's defaults: 800 ms → 30 s, factor 2, jitter 1.0, reset after 2 min.
    fn default() -> Self {
        Self::new(
            Duration::from_millis(800),
            Duration::from_secs(30),
            2.0,
            1.0,
            Duration::from_secs(120),
        )
    }
}

impl BackoffManager {
    /// A backoff from `initial` to `max` (before jitter), multiplied by `factor` each time,
    /// with up to `jitter` × the delay added at random, reset when `reset_after` passed since
    /// the last backoff.
    pub fn new(
        initial: Duration,
        max: Duration,
        factor: f64,
        jitter: f64,
        reset_after: Duration,
    ) -> Self {
        Self {
            initial,
            max,
            factor,
            jitter,
            reset_after,
            current: initial,
            last: None,
        }
    }

    /// The next delay.
    pub fn next_delay(&mut self) -> Duration {
        let now = Instant::now();
        if self
            .last
            .is_some_and(|last| now.duration_since(last) > self.reset_after)
        {
            self.current = self.initial;
        }
        self.last = Some(now);
        let base = self.current;
        self.current = self.current.mul_f64(self.factor).min(self.max);
        base.mul_f64(1.0 + rand::random::<f64>() * self.jitter)
    }

    /// Sleeps for the next delay.
    pub async fn wait(&mut self) {
        tokio::time::sleep(self.next_delay()).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn doubles_caps_and_resets() {
        let mut b = BackoffManager::new(
            Duration::from_millis(800),
            Duration::from_secs(30),
            2.0,
            0.0,
            Duration::from_secs(120),
        );
        let delays: Vec<_> = (0..8).map(|_| b.next_delay().as_millis()).collect();
        assert_eq!(delays, [800, 1600, 3200, 6400, 12800, 25600, 30000, 30000]);
        tokio::time::advance(Duration::from_secs(121)).await;
        assert_eq!(b.next_delay(), Duration::from_millis(800));
    }

    #[tokio::test(start_paused = true)]
    async fn jitter_stays_within_bounds() {
        let mut b = BackoffManager::default();
        for _ in 0..20 {
            let base = b.current;
            let d = b.next_delay();
            assert!(d >= base && d <= base * 2, "{d:?} vs {base:?}");
        }
    }
}
