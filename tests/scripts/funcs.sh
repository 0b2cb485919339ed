#!/bin/bash
# Exercised by tests/host_programs.rs: the host's bash runs this natively
# and in the sandbox; the output must be identical. Deterministic only.
set -u

fact() {
    local n=$1
    if (( n <= 1 )); then echo 1; else echo $(( n * $(fact $((n - 1))) )); fi
}

fib() {
    local a=0 b=1 i
    for (( i = 0; i < $1; i++ )); do
        local t=$((a + b)); a=$b; b=$t
    done
    echo "$a"
}

greet() { printf 'hello, %s!\n' "${1:-nobody}"; }

echo "== functions and arithmetic"
echo "fact 10 = $(fact 10)"
echo "fib 40 = $(fib 40)"
greet world
greet
echo "hex: $((16#ff)) octal: $((8#17)) power: $((2 ** 20)) mod: $((-7 % 3))"

echo "== command substitution nesting"
echo "$(echo "a$(echo "b$(echo "c$(echo d)")")")"
words=$(printf '%s\n' one two three | wc -l)
echo "wc says ${words// /}"

echo "== pipelines"
printf '%s\n' pear apple fig apple banana | sort | uniq -c | sort -rn | head -n 2
echo "pipestatus:" $(false | true; echo "${PIPESTATUS[@]}")
set -o pipefail
if ! (exit 3) | true; then echo "pipefail caught a failure"; fi
set +o pipefail

echo "== arrays"
arr=(zero one "two words" three)
echo "count=${#arr[@]} second=${arr[1]} third=${arr[2]}"
arr+=(four)
for i in "${!arr[@]}"; do printf '[%d]=%s ' "$i" "${arr[$i]}"; done; echo
declare -A assoc=([red]=1 [green]=2 [blue]=3)
for k in $(printf '%s\n' "${!assoc[@]}" | sort); do echo "assoc $k=${assoc[$k]}"; done
echo "slice: ${arr[@]:1:2}"

echo "== strings"
s="The quick brown fox"
echo "len=${#s} upper=${s^^} sub=${s:4:5} repl=${s/quick/slow} strip=${s#The }"
IFS=, read -r x y z <<< "1,2,3"
echo "read: $x $y $z"

echo "== here-docs"
name=sandbox
cat <<EOT
expanded: $name $((6 * 7))
EOT
cat <<'EOT'
literal: $name $((6 * 7))
EOT
tr a-z A-Z <<< "here-string"

echo "== files and redirection"
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
for i in 1 2 3; do echo "line $i" >> "$tmp/log"; done
exec 3< "$tmp/log"
read -r first <&3
exec 3<&-
echo "first line: $first; lines: $(wc -l < "$tmp/log")"
{ echo out; echo err >&2; } 2> "$tmp/err" > "$tmp/out"
echo "captured: $(cat "$tmp/out") / $(cat "$tmp/err")"
ls "$tmp" | tr '\n' ' '; echo

echo "== subshells, exit codes and traps"
( exit 7 ); echo "subshell status $?"
result=$( (echo inner; exit 2) ); echo "captured '$result' status $?"
f() { return 4; }; f || echo "function returned $?"
bash -c 'echo child bash; exit 5'; echo "child bash status $?"
( trap 'echo trapped TERM' TERM; kill -TERM $BASHPID; echo after kill )
sleep 0.01 & wait $!; echo "background status $?"

echo "== done"
exit 0
