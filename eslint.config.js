/**
 * The effects rule (issue 13), checked by `npm run lint:effects` inside `npm test`: no module of src/ reads the
 * clock, the environment or a random source except src/platform/ (and cmd/, which is not linted at all).
 *
 * Why: tests run the control plane and the node agent on a FakeClock, with seeded random sources and options
 * built in the test, so that deadlines, retries, backoff and placement are exact and repeatable. One
 * `Date.now()`, `Math.random()` or `process.env` read hidden in a domain module defeats that without any test
 * noticing: the code then answers to the machine and the hour rather than to what the test passed in. So time
 * comes from the injected `Clock` (src/platform/clock.ts), ids and secrets from src/platform/ids.ts, random
 * numbers from a `random` parameter (default `systemRandom`, src/platform/random.ts), and configuration is
 * parsed from the environment in cmd/ (or platform/) and passed down as options.
 *
 * This is the only lint of the project: there are no style rules, and none belong here. The parser is
 * typescript-eslint's without type information (fast; the rules below are syntactic).
 */
import tsParser from "@typescript-eslint/parser";

const clock = "Read time from the injected clock (`deps.clock.now()`, a `Clock` from src/platform/clock.ts, or a `now` parameter): tests run on a FakeClock.";
const duration = "Measure durations with `monotonicMs()` (src/platform/clock.ts); time that decides something comes from the injected `Clock`.";
const random = "Take a `random: () => number` parameter (default `systemRandom` from src/platform/random.ts): tests pass a seeded source.";
const ids = "Use `newId()` (ids), `newSecret(prefix)` (secrets) or `randomSalt(n)` from src/platform/ids.ts.";
const env = "Read configuration in cmd/ (or a parser in src/platform/) and pass it down as options: tests build their own.";

export default [
  {
    ignores: ["src/gen/**", "src/platform/**"],
  },
  {
    files: ["src/**/*.ts"],
    languageOptions: { parser: tsParser, ecmaVersion: "latest", sourceType: "module" },
    linterOptions: { reportUnusedDisableDirectives: "off" },
    rules: {
      "no-restricted-properties": [
        "error",
        { object: "Date", property: "now", message: clock },
        { object: "performance", property: "now", message: duration },
        { object: "process", property: "hrtime", message: duration },
        { object: "Math", property: "random", message: random },
        { object: "crypto", property: "randomUUID", message: ids },
        { object: "crypto", property: "getRandomValues", message: ids },
        { object: "crypto", property: "randomBytes", message: ids },
        { object: "crypto", property: "randomInt", message: random },
        { object: "process", property: "env", message: env },
        { object: "process", property: "argv", message: env },
      ],
      "no-restricted-syntax": [
        "error",
        { selector: "NewExpression[callee.name='Date'][arguments.length=0]", message: clock },
        { selector: "CallExpression[callee.name='Date']", message: clock },
      ],
      "no-restricted-imports": [
        "error",
        {
          paths: [
            ...["node:crypto", "crypto"].flatMap((name) => [
              { name, importNames: ["randomUUID", "randomBytes", "getRandomValues", "randomFill", "randomFillSync", "webcrypto"], message: ids },
              { name, importNames: ["randomInt"], message: random },
            ]),
            ...["node:perf_hooks", "perf_hooks"].map((name) => ({ name, importNames: ["performance"], message: duration })),
            ...["node:process", "process"].flatMap((name) => [
              { name, importNames: ["env", "argv"], message: env },
              { name, importNames: ["hrtime"], message: duration },
            ]),
          ],
        },
      ],
    },
  },
];
