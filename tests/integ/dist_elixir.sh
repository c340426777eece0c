#!/usr/bin/env bash
# dist_elixir.sh BUILD - an Elixir node calls cnode-echo with GenServer.call
# ({:echo, :"echo@127.0.0.1"} with --name and --cookie), and a missing name
# exits with :noproc.
. "$(dirname "$0")/dist_lib.sh" "$1"
start_epmd || { echo "0 passed, 1 failed"; exit 1; }
COOKIE=elixir-$RANDOM
ECHO=echo$RANDOM@127.0.0.1
ONEBLOG_NODE=$ECHO ONEBLOG_COOKIE=$COOKIE start_bg echo "$BIN/cnode-echo"
wait_log echo registered 10

R=$(timeout 60 elixir --name "ex$RANDOM@127.0.0.1" --cookie "$COOKIE" \
    --erl "-start_epmd false" -e "
    IO.inspect(GenServer.call({:echo, :\"$ECHO\"}, :hi))
    IO.inspect(GenServer.call({:echo, :\"$ECHO\"}, %{list: [1, 2, 3], str: \"héllo\"}))
    IO.inspect(Node.list(:hidden))
    try do
      GenServer.call({:nosuch, :\"$ECHO\"}, :x, 2000)
    catch
      :exit, {reason, _} -> IO.inspect({:exit, reason})
    end" 2>&1)
echo "$R" | sed 's/^/# /'
check "GenServer.call from Elixir" grep -qx "{:echo, :hi}" <<<"$R"
check "maps and UTF-8 strings round-trip" \
    grep -qx '{:echo, %{list: \[1, 2, 3\], str: "héllo"}}' <<<"$R"
check "the C node is hidden" grep -qx "\[:\"$ECHO\"\]" <<<"$R"
check "a missing name exits with :noproc" grep -qx "{:exit, :noproc}" <<<"$R"
finish
