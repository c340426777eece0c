%% rpc_bench: the BEAM halves of `make bench-rpc` (bench/rpc.sh).
%%
%%   server : gen_server registered as `bench` answering every call with the
%%            reply binary; prints "ready" on stderr and runs until killed
%%            erl -name S@127.0.0.1 ... -eval 'rpc_bench:server()'
%%   client : remote gen_server:call({bench, Node}, {get, 42}) against a BEAM
%%            server or a libcnode one (bench-rpc cnode-server)
%%            erl -name C@127.0.0.1 ... -eval 'rpc_bench:client(Node)'
%%            -> p50_us, p99_us (1 caller), calls_per_s_64 (64 callers)
%%
%% The request and the 1 KiB reply (byte I is I rem 256) are the ones
%% bench/rpc.c uses.  Results go to stdout as `name: value` lines, nothing
%% else; diagnostics to stderr.  BENCH_RPC_SAMPLES (20000) and
%% BENCH_RPC_CALLS (1000 per caller) as for the C side.
-module(rpc_bench).
-behaviour(gen_server).

-export([server/0, client/1]).
-export([init/1, handle_call/3, handle_cast/2]).

-define(CALLERS, 64).
-define(REQ, {get, 42}).

reply() -> list_to_binary([I band 255 || I <- lists:seq(0, 1023)]).

%% ---------------------------------------------------------------- server --

server() ->
    {ok, _} = gen_server:start({local, bench}, ?MODULE, [], []),
    log("beam server ~p ready (~b schedulers)",
        [node(), erlang:system_info(schedulers_online)]),
    receive after infinity -> ok end.

init([]) -> {ok, reply()}.
handle_call(?REQ, _From, Reply) -> {reply, Reply, Reply}.
handle_cast(_Msg, S) -> {noreply, S}.

%% ---------------------------------------------------------------- client --

client(Node) when is_list(Node) -> client(list_to_atom(Node));
client(Node) ->
    Code = try run_client(Node), 0
           catch C:R:St ->
                   io:format(standard_error, "rpc_bench: ~p:~p~n~p~n", [C, R, St]),
                   1
           end,
    erlang:halt(Code).

run_client(Node) ->
    Samples = env_int("BENCH_RPC_SAMPLES", 20000),
    Each = env_int("BENCH_RPC_CALLS", 1000),
    Reply = reply(),
    Srv = {bench, Node},
    true = net_kernel:connect_node(Node),
    timed_calls(Srv, Reply, Samples div 10, []),
    Sorted = lists:sort(timed_calls(Srv, Reply, Samples, [])),
    Self = self(),
    Callers = [spawn_link(fun() ->
                                  receive go -> ok end,
                                  call_loop(Srv, Reply, Each),
                                  Self ! {done, self()}
                          end) || _ <- lists:seq(1, ?CALLERS)],
    T0 = now_ns(),
    [C ! go || C <- Callers],
    [receive {done, C} -> ok end || C <- Callers],
    T = now_ns() - T0,
    log("beam client -> ~p: ~b schedulers, min ~b ns, max ~b ns, ~b x ~b calls in ~.3f s",
        [Node, erlang:system_info(schedulers_online), hd(Sorted), lists:last(Sorted),
         ?CALLERS, Each, T / 1.0e9]),
    out(p50_us, percentile(Sorted, 0.50) / 1000),
    out(p99_us, percentile(Sorted, 0.99) / 1000),
    out(calls_per_s_64, round(?CALLERS * Each / (T / 1.0e9))).

timed_calls(_Srv, _Reply, 0, Acc) -> Acc;
timed_calls(Srv, Reply, N, Acc) ->
    T0 = erlang:monotonic_time(nanosecond),
    Reply = gen_server:call(Srv, ?REQ),
    T1 = erlang:monotonic_time(nanosecond),
    timed_calls(Srv, Reply, N - 1, [T1 - T0 | Acc]).

call_loop(_Srv, _Reply, 0) -> ok;
call_loop(Srv, Reply, N) ->
    Reply = gen_server:call(Srv, ?REQ),
    call_loop(Srv, Reply, N - 1).

%% Nearest-rank percentile of an ascending list.
percentile(Sorted, P) ->
    lists:nth(max(1, ceil(P * length(Sorted))), Sorted).

env_int(Name, Default) ->
    case os:getenv(Name) of
        false -> Default;
        "" -> Default;
        V -> list_to_integer(V)
    end.

now_ns() -> erlang:monotonic_time(nanosecond).

out(Name, V) when is_integer(V) -> io:format("~s: ~b~n", [Name, V]);
out(Name, V) -> io:format("~s: ~.3f~n", [Name, V]).

log(Fmt, Args) -> io:format(standard_error, Fmt ++ "~n", Args).
