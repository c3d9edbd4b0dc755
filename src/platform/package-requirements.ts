/**
 * What a package may say about its Python environment: its `requirements.txt` and the `python` version
 * of its `gpu-agent.json`. Checked by the control plane at finalize (src/blobs/package-inspect.ts,
 * src/planner/plan.ts) so a refusal comes with its reason before any job runs; here, in the floor, so
 * the node agent can apply the same rules to what it is about to install.
 *
 * Requirements name distributions only. Where they come from is the node owner's choice (the agent's
 * `--pip-index-url` and `--find-links`), so a line that names a source is refused: URLs, VCS checkouts,
 * local paths and archives, editable installs, includes of other files, and index or trust options.
 * What stays is PEP 508 without the URL form, one per line: `name[extras] specifiers ; markers`,
 * optionally followed by `--hash=algorithm:hex` options, plus comments, blank lines and `\` line
 * continuations, as pip reads them.
 */

/** The file a package's requirements live in, at the package root. */
export const requirementsFileName = "requirements.txt";

/** Largest requirements.txt a package may carry. */
export const requirementsMaxBytes = 64 * 1024;

const namePart = "[A-Za-z0-9](?:[A-Za-z0-9._-]*[A-Za-z0-9])?";
const clause = "(?:~=|===|==|!=|<=|>=|<|>)\\s*[A-Za-z0-9_.*+!-]+";
const clauses = `${clause}(?:\\s*,\\s*${clause})*`;
/** `name`, `name[extra,…]`, then specifiers bare or in parentheses, then an optional `; marker`. */
const requirementPattern = new RegExp(
  `^(${namePart})\\s*(?:\\[\\s*(?:${namePart}(?:\\s*,\\s*${namePart})*)?\\s*\\])?\\s*(?:${clauses}|\\(\\s*${clauses}\\s*\\))?\\s*(?:;(.*))?$`,
);
/** Marker expressions use names, quoted values, comparisons, `and`/`or` and parentheses; nothing that reads a source. */
const markerPattern = /^[A-Za-z0-9_ .'"<>=!~(),*+-]+$/;
const hashPattern = /^--hash[=\s](sha256|sha384|sha512):[0-9a-fA-F]+$/;

const sourceOptions = new Set(["-i", "--index-url", "--extra-index-url", "-f", "--find-links", "--trusted-host", "--no-index"]);
const includeOptions = new Set(["-r", "--requirement", "-c", "--constraint"]);
const editableOptions = new Set(["-e", "--editable"]);

const byName = "list the distribution by name and version (e.g. numpy==2.1.0); the node installs it from the sources its owner configures";

/** A logical line of the file: continuations joined, the comment removed; `number` is where it starts. */
export interface LogicalLine {
  number: number;
  text: string;
}

/** The file's lines as pip reads them (the node agent keys its environments by them). */
export function logicalLines(text: string): LogicalLine[] {
  const lines: LogicalLine[] = [];
  let pending: LogicalLine | undefined;
  text.split(/\r?\n/).forEach((physical, i) => {
    const current = pending ?? { number: i + 1, text: "" };
    if (physical.endsWith("\\")) {
      current.text += physical.slice(0, -1);
      pending = current;
      return;
    }
    current.text += physical;
    pending = undefined;
    lines.push(current);
  });
  if (pending !== undefined) lines.push(pending);
  // pip's comments: `#` at the start of a line or after whitespace.
  return lines.map((l) => ({ number: l.number, text: l.text.replace(/(^|\s)#.*$/, "").trim() }));
}

function optionProblem(option: string): string {
  const flag = option.split(/[=\s]/, 1)[0]!;
  if (editableOptions.has(flag)) return `is an editable install (${flag}); ${byName}`;
  if (includeOptions.has(flag)) return `includes another file (${flag}); put every requirement in requirements.txt itself`;
  if (sourceOptions.has(flag)) return `chooses where packages come from (${flag}); the node owner chooses the sources, so list distributions by name only`;
  if (flag === "--hash") return "has a --hash that is not sha256, sha384 or sha512 followed by :hex";
  return `uses the pip option ${flag}, which a package may not set; only --hash=… may follow a requirement`;
}

/** Why the requirement part of a line (before its options) is refused, or undefined. */
function requirementProblem(requirement: string): string | undefined {
  if (/^(git|hg|svn|bzr)\+/i.test(requirement)) return `names a version-control repository; ${byName}`;
  if (requirement.includes("://") || /^[A-Za-z0-9._-]+(\[[^\]]*\])?\s*@/.test(requirement)) return `names a URL; ${byName}`;
  if (/^(file:|\.|\/|~)/i.test(requirement) || /[/\\]/.test(requirement.split(";")[0]!)) return `names a local path; ${byName}`;
  if (/\.(whl|zip|tar\.gz|tgz|tar\.bz2|egg)$/i.test(requirement.split(";")[0]!.trim())) return `names an archive file; ${byName}`;
  const parsed = requirementPattern.exec(requirement);
  if (parsed === null) return "is not a requirement of the form name[extras] specifiers ; markers (e.g. torch>=2.3,<3)";
  const marker = parsed[2];
  if (marker !== undefined && !markerPattern.test(marker.trim())) return "has an environment marker with characters a marker does not use";
  return undefined;
}

function lineProblem(text: string): string | undefined {
  if (/[\u0000-\u0008\u000b-\u001f\u007f]/.test(text)) return "has a control character";
  // pip expands ${NAME} from the installing machine's environment: a package may not read it.
  if (text.includes("${")) return "refers to an environment variable (${…}) of the machine that installs it";
  if (text.startsWith("-")) return optionProblem(text);
  // pip splits a requirement from its options at the first word that starts with "-".
  const words = text.split(/\s+/);
  const firstOption = words.findIndex((w) => w.startsWith("-"));
  const requirement = (firstOption < 0 ? words : words.slice(0, firstOption)).join(" ");
  const problem = requirementProblem(requirement);
  if (problem !== undefined) return problem;
  if (firstOption < 0) return undefined;
  const options = words.slice(firstOption);
  for (let i = 0; i < options.length; i++) {
    const word = options[i]!;
    // `--hash sha256:…` as two words is the same option as `--hash=sha256:…`.
    const option = word === "--hash" && i + 1 < options.length ? `${word} ${options[++i]!}` : word;
    if (!hashPattern.test(option)) return optionProblem(option);
  }
  return undefined;
}

function shown(text: string): string {
  return JSON.stringify(text.length > 80 ? `${text.slice(0, 80)}…` : text);
}

/**
 * Why a package's requirements.txt is refused, naming the line, or undefined when every line is a
 * requirement by name (module comment).
 */
export function requirementsProblem(text: string): string | undefined {
  for (const line of logicalLines(text)) {
    if (line.text === "") continue;
    const problem = lineProblem(line.text);
    if (problem !== undefined) return `${requirementsFileName} line ${line.number}: ${shown(line.text)} ${problem}`;
  }
  return undefined;
}

/**
 * Why a manifest's `python` value is refused, or undefined: a Python 3 version as major.minor
 * ("3.11"), which the agent matches against the interpreters it has.
 */
export function pythonVersionProblem(value: unknown): string | undefined {
  if (typeof value === "string" && /^3\.(0|[1-9][0-9]?)$/.test(value)) return undefined;
  return '"python" must be a Python 3 version as major.minor, like "3.11"';
}
