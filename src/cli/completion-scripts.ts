// The completion scripts of `labctl completion`, one per shell, from the command specs
// (cli/completion.ts). Each script has the same parts: a table of every command path's
// subcommands, options (those taking a value with what it completes to) and positional
// arguments; a walk over the words typed so far that finds the command path and how many
// positional arguments came before the cursor (skipping options and their values); and
// the completion of the word under the cursor from the table, asking `labctl __complete
// KIND` for lab names, machines, members, images and recipes.
import type { CommandSpec, ValueKind } from './completion.js';

/** POSIX shell single quotes (bash, zsh). */
const sq = (s: string) => `'${s.replaceAll("'", `'\\''`)}'`;
/** fish single quotes: backslash and quote are escaped inside. */
const fq = (s: string) => `'${s.replace(/[\\']/g, '\\$&')}'`;

const argKinds = (spec: CommandSpec) => spec.args.map((k, i) => (spec.variadic && i === spec.args.length - 1 ? `${k}...` : k));
const valueOptions = (spec: CommandSpec) => spec.options.flatMap((o) => (o.value ? o.names.map((n) => `${n}=${o.value}`) : []));

// ---------------------------------------------------------------------------
// bash

export function bashScript(name: string, specs: CommandSpec[]): string {
  const fn = `_${name.replace(/[^A-Za-z0-9_]/g, '_')}`;
  const cases = specs
    .map((s) => {
      const vars = [
        `cmds=${sq(s.commands.map((c) => c.name).join(' '))}`,
        `opts=${sq(s.options.flatMap((o) => o.names).join(' '))}`,
        `vopts=${sq(valueOptions(s).join(' '))}`,
        `args=${sq(argKinds(s).join(' '))}`,
      ];
      return `  ${sq(s.path)}) ${vars.join(' ')} ;;`;
    })
    .join('\n');
  return `# bash completion for ${name} (\`${name} completion bash\`). Load it in this shell with
#   source <(${name} completion bash)
# or for every shell: ${name} completion bash > /etc/bash_completion.d/${name}
# Commands and options are those of the ${name} that printed this; lab names, machines,
# members and images are asked of ${name} (\`${name} __complete KIND\`) at each Tab.

# $1: a command path ('' for ${name} itself, 'net up'). Sets cmds (its subcommands), opts
# (its options), vopts (those that take a value, as OPTION=KIND) and args (the KIND of each
# positional argument; a last one ending in ... repeats).
${fn}_spec() {
  case $1 in
${cases}
  *) cmds='' opts='' vopts='' args='' ;;
  esac
}

# $1: an option. Prints the KIND of its value when it takes one (else fails).
${fn}_kind() {
  local v
  for v in $vopts; do
    if [[ \${v%%=*} == "$1" ]]; then
      printf '%s' "\${v#*=}"
      return 0
    fi
  done
  return 1
}

# $1: the command, $2: a KIND, $3: the word typed so far. Adds its completions to COMPREPLY.
${fn}_values() {
  local IFS=$'\\n' f
  case $2 in
  none) ;;
  files) COMPREPLY+=($(compgen -f -- "$3")); compopt -o filenames 2>/dev/null ;;
  dirs) COMPREPLY+=($(compgen -d -- "$3")); compopt -o filenames 2>/dev/null ;;
  choices:*)
    f=\${2#choices:}
    COMPREPLY+=($(compgen -W "\${f//,/$'\\n'}" -- "$3")) ;;
  labs)
    COMPREPLY+=($(compgen -W "$("$1" __complete labs 2>/dev/null)" -- "$3"))
    # and lab files: directories and *.yaml, *.yml
    for f in $(compgen -f -- "$3"); do
      if [[ -d $f || $f == *.yaml || $f == *.yml ]]; then COMPREPLY+=("$f"); fi
    done
    compopt -o filenames 2>/dev/null ;;
  *) COMPREPLY+=($(compgen -W "$("$1" __complete "$2" 2>/dev/null)" -- "$3")) ;;
  esac
}

${fn}() {
  local cur=\${COMP_WORDS[COMP_CWORD]} path='' npos=0 skip=0 endopts=0 i w opt='' kind cmds opts vopts args
  COMPREPLY=()
  ${fn}_spec ''
  for ((i = 1; i < COMP_CWORD; i++)); do
    w=\${COMP_WORDS[i]}
    if ((skip)); then skip=0; continue; fi
    if ((!endopts)); then
      # --option=value comes as three words (= is in COMP_WORDBREAKS): skip the value.
      if [[ $w == = ]]; then skip=1; continue; fi
      if [[ $w == -- ]]; then endopts=1; continue; fi
      if [[ $w == -* ]]; then
        if [[ \${COMP_WORDS[i+1]} != = ]] && ${fn}_kind "$w" >/dev/null; then skip=1; fi
        continue
      fi
    fi
    if ((npos == 0)) && [[ " $cmds " == *" $w "* ]]; then
      path=\${path:+$path }$w
      ${fn}_spec "$path"
      continue
    fi
    npos=$((npos + 1))
  done
  # An option's value: "--image <Tab>", "--image=<Tab>", "--image=bo<Tab>".
  if ((!endopts)); then
    if [[ $cur == = ]]; then
      opt=\${COMP_WORDS[COMP_CWORD-1]}
      cur=''
    elif ((COMP_CWORD > 2)) && [[ \${COMP_WORDS[COMP_CWORD-1]} == = ]]; then
      opt=\${COMP_WORDS[COMP_CWORD-2]}
    elif ((COMP_CWORD > 1)) && [[ \${COMP_WORDS[COMP_CWORD-1]} == -* ]]; then
      opt=\${COMP_WORDS[COMP_CWORD-1]}
    fi
    # (and "--image=bo" as one word, where = is not in COMP_WORDBREAKS)
    if [[ -z $opt && $cur == --*=* ]] && kind=$(${fn}_kind "\${cur%%=*}"); then
      ${fn}_values "$1" "$kind" "\${cur#*=}"
      COMPREPLY=("\${COMPREPLY[@]/#/\${cur%%=*}=}")
      return 0
    fi
    if [[ -n $opt ]] && kind=$(${fn}_kind "$opt"); then
      ${fn}_values "$1" "$kind" "$cur"
      return 0
    fi
    if [[ $cur == -* ]]; then
      COMPREPLY=($(compgen -W "$opts" -- "$cur"))
      return 0
    fi
  fi
  if [[ -n $cmds ]] && ((npos == 0)); then
    COMPREPLY=($(compgen -W "$cmds" -- "$cur"))
  fi
  local -a a=($args)
  local n=\${#a[@]}
  if ((npos < n)); then
    kind=\${a[npos]}
  elif ((n > 0)) && [[ \${a[n-1]} == *... ]]; then
    kind=\${a[n-1]}
  else
    return 0
  fi
  ${fn}_values "$1" "\${kind%...}" "$cur"
}

complete -F ${fn} ${name}
`;
}

// ---------------------------------------------------------------------------
// zsh

export function zshScript(name: string, specs: CommandSpec[]): string {
  const fn = `_${name.replace(/[^A-Za-z0-9_]/g, '_')}`;
  // _describe's NAME:DESCRIPTION, a colon in NAME escaped.
  const described = (n: string, d: string) => sq(`${n.replaceAll(':', '\\:')}:${d}`);
  const cases = specs
    .map((s) => {
      const vars = [
        `cmds=(${s.commands.map((c) => described(c.name, c.description)).join(' ')})`,
        `opts=(${s.options.flatMap((o) => o.names.map((n) => described(n, o.description))).join(' ')})`,
        `vopts=(${s.options.flatMap((o) => (o.value ? o.names.flatMap((n) => [sq(n), sq(o.value!)]) : [])).join(' ')})`,
        `args=(${argKinds(s).map(sq).join(' ')})`,
      ];
      return `  (${sq(s.path)})\n    ${vars.join('\n    ')} ;;`;
    })
    .join('\n');
  return `#compdef ${name}
# zsh completion for ${name} (\`${name} completion zsh\`). Load it, after compinit, with
#   source <(${name} completion zsh)
# or save it as ${fn} in a directory of $fpath.
# Commands and options are those of the ${name} that printed this; lab names, machines,
# members and images are asked of ${name} (\`${name} __complete KIND\`) at each Tab.

# $1: a command path ('' for ${name} itself, 'net up'). Sets the arrays cmds and opts
# (NAME:DESCRIPTION), vopts (OPTION KIND pairs: the options that take a value) and args
# (the KIND of each positional argument; a last one ending in ... repeats).
${fn}_spec() {
  case $1 in
${cases}
  (*) cmds=() opts=() vopts=() args=() ;;
  esac
}

# $1: a KIND. Adds its completions.
${fn}_values() {
  local cmd=\${(Q)words[1]}
  case $1 in
  (none) return 1 ;;
  (files) _files ;;
  (dirs) _files -/ ;;
  (choices:*) compadd -- \${(s:,:)\${1#choices:}} ;;
  (labs)
    compadd -- \${(f)"$(command $cmd __complete labs 2>/dev/null)"}
    _files -g '*.(yaml|yml)' ;;
  (*) compadd -- \${(f)"$(command $cmd __complete $1 2>/dev/null)"} ;;
  esac
}

${fn}() {
  local -a cmds opts vopts args
  local -A vk
  local cpath='' w kind opt='' cur=\${words[CURRENT]}
  local -i i npos=0 skip=0 endopts=0
  ${fn}_spec ''
  vk=($vopts)
  for ((i = 2; i < CURRENT; i++)); do
    w=\${words[i]}
    if ((skip)); then skip=0; continue; fi
    if ((!endopts)); then
      if [[ $w == -- ]]; then endopts=1; continue; fi
      if [[ $w == -* ]]; then
        [[ $w != *=* && -n \${vk[$w]} ]] && skip=1
        continue
      fi
    fi
    if ((npos == 0)) && ((\${cmds[(I)\${(b)w}:*]})); then
      cpath=\${cpath:+$cpath }$w
      ${fn}_spec "$cpath"
      vk=($vopts)
      continue
    fi
    npos+=1
  done
  if ((!endopts)); then
    # An option's value: "--image <Tab>", "--image=<Tab>".
    if [[ $cur == -*=* ]]; then
      opt=\${cur%%=*}
      compset -P '*='
    elif ((CURRENT > 2)) && [[ \${words[CURRENT-1]} == -* ]]; then
      opt=\${words[CURRENT-1]}
    fi
    if [[ -n $opt && -n \${vk[$opt]} ]]; then
      ${fn}_values \${vk[$opt]}
      return
    fi
    if [[ $cur == -* ]]; then
      _describe -t options option opts
      return
    fi
  fi
  if ((npos == 0 && $#cmds)); then
    _describe -t commands command cmds
  fi
  if ((npos < $#args)); then
    kind=\${args[npos+1]}
  elif (($#args)) && [[ \${args[-1]} == *... ]]; then
    kind=\${args[-1]}
  else
    return
  fi
  ${fn}_values \${kind%...}
}

if [[ \${funcstack[1]} == ${fn} ]]; then
  # autoloaded from $fpath: this file is the function's body, run it
  ${fn} "$@"
else
  compdef ${fn} ${name}
fi
`;
}

// ---------------------------------------------------------------------------
// fish

function fishValue(fn: string, kind: ValueKind): string {
  if (kind === 'none') return '-x';
  if (kind === 'files') return '-r -F';
  if (kind === 'dirs') return `-x -a ${fq('(__fish_complete_directories)')}`;
  if (kind.startsWith('choices:')) return `-x -a ${fq(kind.slice('choices:'.length).split(',').join(' '))}`;
  return `-x -a ${fq(`(${fn}_values ${kind})`)}`;
}

export function fishScript(name: string, specs: CommandSpec[]): string {
  const fn = `__${name.replace(/[^A-Za-z0-9_]/g, '_')}`;
  const cases = specs
    .map((s) =>
      [
        `        case ${fq(s.path)}`,
        `            echo ${fq(`c ${s.commands.map((c) => c.name).join(' ')}`)}`,
        `            echo ${fq(`v ${valueOptions(s).join(' ')}`)}`,
      ].join('\n'),
    )
    .join('\n');
  const lines: string[] = [];
  for (const s of specs) {
    for (const c of s.commands) lines.push(`complete -c ${name} -n ${fq(`${fn}_at ${fq(s.path)} 0`)} -a ${fq(c.name)} -d ${fq(c.description)}`);
    for (const o of s.options) {
      const names = o.names.map((n) => (n.startsWith('--') ? `-l ${fq(n.slice(2))}` : `-s ${fq(n.slice(1))}`)).join(' ');
      lines.push(`complete -c ${name} -n ${fq(`${fn}_at ${fq(s.path)}`)} ${names} -d ${fq(o.description)}${o.value ? ` ${fishValue(fn, o.value)}` : ''}`);
    }
    s.args.forEach((kind, i) => {
      const at = s.variadic && i === s.args.length - 1 ? `${i}+` : String(i);
      if (kind === 'none') return;
      const values = kind === 'files' ? '-F' : kind === 'labs' ? `-a ${fq(`(${fn}_values labs)`)}` : fishValue(fn, kind).replace(/^-x /, '');
      lines.push(`complete -c ${name} -n ${fq(`${fn}_at ${fq(s.path)} ${at}`)} ${values}`);
    });
  }
  return `# fish completion for ${name} (\`${name} completion fish\`). Load it with
#   ${name} completion fish | source
# or save it as ~/.config/fish/completions/${name}.fish
# Commands and options are those of the ${name} that printed this; lab names, machines,
# members and images are asked of ${name} (\`${name} __complete KIND\`) at each Tab.

# $argv[1]: a command path ('' for ${name} itself, 'net up'). Prints "c SUBCOMMANDS..." and
# "v OPTION=KIND..." (the options that take a value).
function ${fn}_spec
    switch "$argv[1]"
${cases}
        case '*'
            echo 'c'
            echo 'v'
    end
end

# Prints the command path of the words before the cursor, then how many positional
# arguments they hold (options and their values left out).
function ${fn}_state
    set -l words (commandline -opc)
    set -e words[1]
    set -l cpath ''
    set -l npos 0
    set -l skip 0
    set -l endopts 0
    set -l spec (${fn}_spec '')
    for w in $words
        if test $skip = 1
            set skip 0
            continue
        end
        if test $endopts = 0
            if test "$w" = '--'
                set endopts 1
                continue
            end
            if string match -q -- '-*' $w
                if not string match -q -- '*=*' $w; and contains -- $w (string split ' ' -- (string sub -s 3 -- $spec[2]) | string replace -r '=.*' '')
                    set skip 1
                end
                continue
            end
        end
        if test $npos = 0; and contains -- $w (string split ' ' -- (string sub -s 3 -- $spec[1]))
            set cpath (string trim -- "$cpath $w")
            set spec (${fn}_spec "$cpath")
            continue
        end
        set npos (math $npos + 1)
    end
    echo "p $cpath"
    echo $npos
end

# True when the words before the cursor are at command path $argv[1] and, when $argv[2] is
# given, hold that many positional arguments (N+: N or more).
function ${fn}_at
    set -l state (${fn}_state)
    test (string sub -s 3 -- $state[1]) = "$argv[1]"; or return 1
    set -q argv[2]; or return 0
    if string match -q -- '*+' $argv[2]
        test $state[2] -ge (string trim -c + -- $argv[2])
    else
        test $state[2] = $argv[2]
    end
end

# $argv[1]: a KIND that ${name} lists itself (and, for labs, lab files).
function ${fn}_values
    set -l cmd (commandline -opc)[1]
    command $cmd __complete $argv[1] 2>/dev/null
    if test "$argv[1]" = labs
        __fish_complete_suffix .yaml
        __fish_complete_suffix .yml
    end
end

complete -c ${name} -f
${lines.join('\n')}
`;
}
