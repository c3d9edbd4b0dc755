/**
 * Random numbers, injected like the clock: code that jitters or samples takes a
 * `random: () => number` (uniform in [0, 1)) and tests pass a seeded one, so retries and
 * backoff are repeatable. This is the real source, the default where none is passed.
 */
export const systemRandom: () => number = Math.random;
