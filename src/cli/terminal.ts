/**
 * Standard input for the commands that take a password (`login`, `logout`, `api-keys`): asked for
 * on the terminal without echo, or read whole from a pipe (`--password-stdin`), never from a flag
 * (a flag's value is seen by every user of the machine in `ps` and lands in the shell's history).
 */
import { CliError, usageError } from "./errors.ts";

/** Standard input as gpuctl uses it; the process's in `cmd/`, a scripted one in tests. */
export interface Stdin {
  /** True when standard input is a terminal, so a password can be asked for. */
  readonly isTTY: boolean;
  /** Everything on standard input, as UTF-8 text. */
  readAll(): Promise<string>;
  /** Shows `prompt` on stderr and reads one line from the terminal with echo off. */
  readSecret(prompt: string): Promise<string>;
}

/** Exit status after Ctrl-C at a prompt (128 + SIGINT), as a shell reports it. */
const INTERRUPTED_EXIT_CODE = 130;

/** The process's standard input. */
export function createProcessStdin(): Stdin {
  const input = process.stdin;
  return {
    isTTY: input.isTTY === true,
    async readAll() {
      const chunks: Buffer[] = [];
      for await (const chunk of input) chunks.push(typeof chunk === "string" ? Buffer.from(chunk) : (chunk as Buffer));
      return Buffer.concat(chunks).toString("utf8");
    },
    readSecret(prompt) {
      return new Promise((resolve, reject) => {
        // Raw mode (no echo, no line editing: done here instead) before the prompt, so nothing typed after it is echoed.
        input.setRawMode(true);
        input.setEncoding("utf8");
        input.resume();
        process.stderr.write(prompt);
        let value = "";
        let inEscape = false;
        const finish = (error?: Error) => {
          input.removeListener("data", onData);
          input.setRawMode(false);
          input.pause();
          process.stderr.write("\n");
          if (error === undefined) resolve(value);
          else reject(error);
        };
        const onData = (chunk: string) => {
          for (const ch of chunk) {
            if (inEscape) {
              // An arrow or function key: ESC [ … final letter. None of it is part of a password.
              if (/[A-Za-z~]/.test(ch)) inEscape = false;
              continue;
            }
            if (ch === "\r" || ch === "\n") return finish();
            if (ch === "\u0003") return finish(new CliError("INTERRUPTED", "interrupted", { exitCode: INTERRUPTED_EXIT_CODE }));
            if (ch === "\u0004") {
              if (value === "") return finish(usageError("PASSWORD_MISSING", "no password given"));
              continue;
            }
            if (ch === "\u007f" || ch === "\b") value = [...value].slice(0, -1).join("");
            else if (ch === "\u0015") value = "";
            else if (ch === "\u001b") inEscape = true;
            else if (ch >= " ") value += ch;
          }
        };
        input.on("data", onData);
      });
    },
  };
}

/** How a command gets the password: `--password-stdin`, else a prompt on the terminal. */
export interface PasswordSource {
  passwordStdin?: boolean | undefined;
}

/**
 * The password of `email`: standard input whole (one trailing newline dropped, so `echo pw |`
 * works) with `--password-stdin`, else asked for on the terminal. Without a terminal and without
 * the flag it is a usage error rather than a hang.
 */
export async function readPassword(stdin: Stdin, email: string, source: PasswordSource): Promise<string> {
  let password: string;
  if (source.passwordStdin === true) {
    password = (await stdin.readAll()).replace(/\r?\n$/, "");
    if (password === "") throw usageError("PASSWORD_MISSING", "--password-stdin: standard input was empty");
  } else {
    if (!stdin.isTTY) throw usageError("PASSWORD_MISSING", `no terminal to ask for ${email}'s password on: pipe it in with --password-stdin`);
    password = await stdin.readSecret(`Password for ${email}: `);
    if (password === "") throw usageError("PASSWORD_MISSING", "no password given");
  }
  return password;
}
