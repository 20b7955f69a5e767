# bash completion for meshctl — install as /usr/share/bash-completion/completions/meshctl (cmake
# --install does), or `source` it. Completes commands, the operators' verbs, flags, files for the
# TLS and script flags, and node and job names from a reachable coordinator (`meshctl nodes|jobs
# --json`, 2 s at most; nothing when it does not answer).

_meshctl_names() {  # _meshctl_names nodes|jobs
  local coordinator="" i
  for ((i = 1; i < ${#COMP_WORDS[@]} - 1; i++)); do
    [[ ${COMP_WORDS[i]} == --coordinator ]] && coordinator="--coordinator ${COMP_WORDS[i + 1]}"
  done
  # shellcheck disable=SC2086
  meshctl $coordinator --timeout 2s "$1" --json 2>/dev/null |
    grep -o "\"$([[ $1 == nodes ]] && echo node || echo job)\":\"[^\"]*\"" |
    cut -d'"' -f4 | sort -u
}

_meshctl() {
  local cur prev words=() i command="" verb=""
  cur=${COMP_WORDS[COMP_CWORD]}
  prev=${COMP_WORDS[COMP_CWORD - 1]}
  local global="--coordinator --agent --timeout --tls-cert --tls-key --tls-ca --json --help --version"
  for ((i = 1; i < COMP_CWORD; i++)); do
    case ${COMP_WORDS[i]} in
      --coordinator | --agent | --timeout | --tls-cert | --tls-key | --tls-ca | --reason | \
        --world | --script | --shape | --mesh | --names | --gpus-per-node | --ranks)
        ((i++)) ;;
      -*) ;;
      *)
        if [[ -z $command ]]; then
          command=${COMP_WORDS[i]}
        elif [[ -z $verb ]]; then
          verb=${COMP_WORDS[i]}
        fi
        ;;
    esac
  done
  case $prev in
    --tls-cert | --tls-key | --tls-ca | --script | --agent)
      mapfile -t COMPREPLY < <(compgen -f -- "$cur")
      return ;;
    --coordinator | --timeout | --reason | --world | --shape | --mesh | --names | --gpus-per-node | \
      --ranks)
      return ;;
  esac
  if [[ $cur == -* ]]; then
    local flags=$global
    case $command/$verb in
      node/cordon | node/drain | job/end | leave/*) flags="$flags --reason" ;;
      plan/*) flags="$flags --world --script --shape --mesh --names --gpus-per-node --ranks" ;;
    esac
    mapfile -t COMPREPLY < <(compgen -W "$flags" -- "$cur")
    return
  fi
  case $command in
    "")
      mapfile -t COMPREPLY < <(compgen -W "status nodes jobs job node leave plan" -- "$cur") ;;
    node)
      if [[ -z $verb ]]; then
        mapfile -t COMPREPLY < <(compgen -W "cordon uncordon drain forget" -- "$cur")
      else
        mapfile -t COMPREPLY < <(compgen -W "$(_meshctl_names nodes)" -- "$cur")
      fi ;;
    job)
      if [[ -z $verb ]]; then
        mapfile -t COMPREPLY < <(compgen -W "end $(_meshctl_names jobs)" -- "$cur")
      elif [[ $verb == end ]]; then
        mapfile -t COMPREPLY < <(compgen -W "$(_meshctl_names jobs)" -- "$cur")
      fi ;;
  esac
}

complete -F _meshctl meshctl
