/**
 * `gpuctl completion bash|zsh`: a shell completion script, generated from the command tree itself
 * (commander's), so a new command or flag completes without anyone editing a script.
 *
 * Both scripts work the same way: the words typed so far are walked to find the command path
 * (`jobs create`), skipping flags and the values of flags that take one; then the word under the
 * cursor completes to that path's subcommands, or its flags (those of the program included) when
 * it starts with `-`, or, after a flag with fixed choices (`--sensitivity`), to those choices.
 * Anything else falls back to file names (`datasets upload <file>`, `--out <dir>`).
 */
import type { Command, Option } from "commander";

/** The shells a script can be printed for. */
export const COMPLETION_SHELLS = ["bash", "zsh"] as const;

/** One command path of the tree and what may follow it. */
interface Node {
  /** e.g. "" (the program), "jobs", "jobs create". */
  path: string;
  subcommands: { name: string; description: string }[];
  /** Its own flags and the program's. */
  options: OptionInfo[];
  /** Choices of its first argument (`completion <shell>`), offered where it has no subcommands. */
  argChoices: string[];
}

interface OptionInfo {
  /** Long and short spellings, e.g. ["--quiet", "-q"]. */
  names: string[];
  description: string;
  takesValue: boolean;
  choices: string[];
}

function optionInfo(o: Option): OptionInfo {
  return {
    names: [o.long, o.short].filter((n): n is string => n !== undefined && n !== ""),
    description: o.description,
    takesValue: o.required || o.optional,
    choices: o.argChoices ?? [],
  };
}

const helpOption: OptionInfo = { names: ["--help", "-h"], description: "display help for command", takesValue: false, choices: [] };

/** Every command path of the tree, depth first. */
function walk(program: Command): Node[] {
  const globals = program.options.filter((o) => !o.hidden).map(optionInfo);
  const nodes: Node[] = [];
  const visit = (cmd: Command, path: string) => {
    const own = cmd === program ? [] : cmd.options.filter((o) => !o.hidden).map(optionInfo);
    const subs = cmd.commands.filter((c) => !(c as Command & { _hidden?: boolean })._hidden);
    nodes.push({
      path,
      subcommands: subs.map((c) => ({ name: c.name(), description: c.description() })),
      options: [...own, ...globals, helpOption],
      argChoices: cmd.registeredArguments[0]?.argChoices ?? [],
    });
    for (const sub of subs) visit(sub, path === "" ? sub.name() : `${path} ${sub.name()}`);
  };
  visit(program, "");
  return nodes;
}

/** A word as one single-quoted shell word (bash and zsh alike). */
function quote(text: string): string {
  return `'${text.replace(/'/g, `'\\''`)}'`;
}

/** A one-line description: newlines and long runs of space would break the completion menus. */
function oneLine(text: string): string {
  return text.replace(/\s+/g, " ").trim();
}

/** A shell function `name` that runs `body(node)` for the command path given as its first argument. */
function perPath(name: string, nodes: Node[], body: (n: Node) => string): string {
  return [`${name}() {`, '  case "$1" in', ...nodes.map((n) => `    ${quote(n.path)}) ${body(n)} ;;`), "  esac", "}", ""].join("\n");
}

/** Paths that have something to offer besides flags: subcommands, or choices of their argument. */
const withWords = (nodes: Node[]) => nodes.filter((n) => n.subcommands.length > 0 || n.argChoices.length > 0);

/** The helpers both shells share: which paths are commands, which flags take values, and their choices. */
function sharedFunctions(nodes: Node[]): string {
  const paths = nodes.filter((n) => n.path !== "").map((n) => quote(n.path));
  const valueFlags = (n: Node) => n.options.filter((o) => o.takesValue).flatMap((o) => o.names);
  const choiceCases = nodes.flatMap((n) =>
    n.options
      .filter((o) => o.choices.length > 0)
      .flatMap((o) => o.names.map((name) => `    ${quote(`${n.path}|${name}`)}) echo ${quote(o.choices.join(" "))} ;;`)),
  );
  return [
    "_gpuctl_is_command() {",
    '  case "$1" in',
    `    ${paths.join("|")}) return 0 ;;`,
    "  esac",
    "  return 1",
    "}",
    "",
    perPath("_gpuctl_value_flags", nodes, (n) => `echo ${quote(` ${valueFlags(n).join(" ")} `)}`),
    "_gpuctl_takes_value() {",
    '  [[ "$(_gpuctl_value_flags "$1")" == *" ${2%%=*} "* ]]',
    "}",
    "",
    "_gpuctl_choices() {",
    '  case "$1|$2" in',
    ...choiceCases,
    "  esac",
    "}",
    "",
  ].join("\n");
}

/** The words before the cursor, walked to the command path (`$cmdpath`): the same loop in both shells. */
function pathLoop(first: string, words: string): string {
  return [
    `  for (( i = ${first}; i < cword; i++ )); do`,
    `    word=${words}`,
    "    if (( skip )); then skip=0; continue; fi",
    '    if [[ $word == -* ]]; then',
    '      [[ $word != *=* ]] && _gpuctl_takes_value "$cmdpath" "$word" && skip=1',
    "      continue",
    "    fi",
    '    _gpuctl_is_command "${cmdpath:+$cmdpath }$word" && cmdpath="${cmdpath:+$cmdpath }$word"',
    "  done",
  ].join("\n");
}

function bashScript(nodes: Node[]): string {
  return [
    "# bash completion for gpuctl, generated by `gpuctl completion bash`.",
    "# Load it in this shell:   source <(gpuctl completion bash)",
    "# or for every new shell:  gpuctl completion bash > ~/.local/share/bash-completion/completions/gpuctl",
    "",
    sharedFunctions(nodes),
    perPath("_gpuctl_subcommands", withWords(nodes), (n) => `echo ${quote([...n.subcommands.map((s) => s.name), ...n.argChoices].join(" "))}`),
    perPath("_gpuctl_options", nodes, (n) => `echo ${quote(n.options.flatMap((o) => o.names).join(" "))}`),
    "_gpuctl() {",
    '  local cur="${COMP_WORDS[COMP_CWORD]}" prev="" cmdpath="" word i skip=0 cword=$COMP_CWORD',
    '  (( COMP_CWORD > 0 )) && prev="${COMP_WORDS[COMP_CWORD-1]}"',
    pathLoop("1", '"${COMP_WORDS[i]}"'),
    '  if [[ $prev == -* && $prev != *=* ]] && _gpuctl_takes_value "$cmdpath" "$prev"; then',
    '    COMPREPLY=($(compgen -W "$(_gpuctl_choices "$cmdpath" "$prev")" -- "$cur"))',
    "    return 0",
    "  fi",
    "  if [[ $cur == -* ]]; then",
    '    COMPREPLY=($(compgen -W "$(_gpuctl_options "$cmdpath")" -- "$cur"))',
    "  else",
    '    COMPREPLY=($(compgen -W "$(_gpuctl_subcommands "$cmdpath")" -- "$cur"))',
    "  fi",
    "}",
    "",
    "# -o default: file names where nothing above matches (a file argument, --out, --file).",
    "complete -o default -F _gpuctl gpuctl",
    "",
  ].join("\n");
}

function zshScript(nodes: Node[]): string {
  // _describe splits "name:description" at the first unescaped colon.
  const entry = (name: string, description: string) => quote(`${name.replace(/:/g, "\\:")}:${oneLine(description)}`);
  return [
    "#compdef gpuctl",
    "# zsh completion for gpuctl, generated by `gpuctl completion zsh`.",
    "# Load it in this shell:   source <(gpuctl completion zsh)",
    '# or for every new shell:  gpuctl completion zsh > "${fpath[1]}/_gpuctl"   (then restart zsh)',
    "",
    sharedFunctions(nodes),
    perPath("_gpuctl_subcommands", withWords(nodes), (n) => `print -rl -- ${[...n.subcommands.map((s) => entry(s.name, s.description)), ...n.argChoices.map((c) => entry(c, ""))].join(" ")}`),
    perPath("_gpuctl_options", nodes, (n) => `print -rl -- ${n.options.flatMap((o) => o.names.map((name) => entry(name, o.description))).join(" ")}`),
    "_gpuctl() {",
    '  local cur=${words[CURRENT]} prev=${words[CURRENT-1]} cmdpath="" word i skip=0 cword=$CURRENT',
    "  local -a entries values",
    pathLoop("2", "${words[i]}"),
    '  if [[ $prev == -* && $prev != *=* ]] && _gpuctl_takes_value "$cmdpath" "$prev"; then',
    '    values=(${=$(_gpuctl_choices "$cmdpath" "$prev")})',
    "    if (( ${#values} )); then compadd -a values; else _files; fi",
    "    return",
    "  fi",
    "  if [[ $cur == -* ]]; then",
    '    entries=("${(@f)$(_gpuctl_options "$cmdpath")}")',
    "    _describe -t options option entries",
    "  else",
    '    entries=("${(@f)$(_gpuctl_subcommands "$cmdpath")}")',
    "    if [[ -n ${entries[1]} ]]; then _describe -t commands command entries; else _files; fi",
    "  fi",
    "}",
    "",
    "# Autoloaded from $fpath the file is the body of _gpuctl: complete now. Sourced: register it.",
    'if [[ "${funcstack[1]}" == _gpuctl ]]; then',
    '  _gpuctl "$@"',
    "else",
    "  (( $+functions[compdef] )) || { autoload -Uz compinit && compinit; }",
    "  compdef _gpuctl gpuctl",
    "fi",
    "",
  ].join("\n");
}

/** The completion script of `shell` for the command tree of `program`. */
export function completionScript(program: Command, shell: (typeof COMPLETION_SHELLS)[number]): string {
  const nodes = walk(program);
  return shell === "bash" ? bashScript(nodes) : zshScript(nodes);
}
