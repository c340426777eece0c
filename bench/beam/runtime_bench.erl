%% runtime_bench: the BEAM half of the libcnode runtime benchmark.
%%
%% Measures, on the BEAM, the same work that build/bin/bench-runtime does in
%% C, so bench/runtime.sh can report our runtime relative to Erlang/OTP:
%%
%%   spawn : spawn N idle processes (N = $BENCH_N_SPAWN, default 1,000,000)
%%           -> spawn_1m_s, bytes_per_process (OS-level RSS growth / N)
%%   ring  : 10,000-process ring, token goes 100 times round (1M messages)
%%           -> ring_msgs_per_s
%%   call  : gen_server:call(Pid, ping) answered with {echo, ping}
%%           -> local_call_p50_us, local_call_p99_us (1 caller),
%%              local_calls_per_s_64 (64 concurrent callers, one server)
%%
%% Results go to stdout as `name: value` lines, nothing else; diagnostics go
%% to stderr.  Run one kind per VM so the kinds cannot disturb each other:
%%
%%   erl -noshell -pa build/beam +P 2000000 -eval 'runtime_bench:main([ring])'
%%
%% main/1 halts the VM afterwards; run/1 (spawn | ring | call | all) does not.
-module(runtime_bench).
-behaviour(gen_server).

-export([main/0, main/1, run/1]).
-export([init/1, handle_call/3, handle_cast/2]).

-define(RING_SIZE, 10000).
-define(RING_ROUNDS, 100).
-define(CALL_WARMUP, 10000).
-define(CALL_SAMPLES, 100000).
-define(CALLERS, 64).
-define(CALLS_EACH, 10000).

%% Entry points for `erl -s runtime_bench main [Kind]` and `-eval`.
main() -> main([all]).
main([Kind]) ->
    Code = try run(to_atom(Kind)), 0
           catch C:R:St ->
                   io:format(standard_error, "runtime_bench: ~p:~p~n~p~n",
                             [C, R, St]),
                   1
           end,
    erlang:halt(Code).

to_atom(A) when is_atom(A) -> A;
to_atom(S) when is_list(S) -> list_to_atom(S).

run(all) -> [run(K) || K <- [spawn, ring, call]], ok;
run(Kind) ->
    %% Our C runtime has a single scheduler thread; the BEAM uses its
    %% defaults (one scheduler per core), so say how many it has.
    log("beam: OTP ~s, ~b schedulers online, kind ~p",
        [erlang:system_info(otp_release),
         erlang:system_info(schedulers_online), Kind]),
    bench(Kind).

%% ---------------------------------------------------------------- spawn --

%% Spawn N processes that block in receive until told to stop.  The clock
%% stops once all of them have been spawned *and* have run up to their
%% receive (the run queues are empty), i.e. they are real, parked processes.
%% Memory is the OS view (VmRSS), not erlang:memory(), so allocator overhead
%% counts.  The pid list we keep to stop them costs 16 bytes/process and is
%% included (the C side keeps its pids as well).
bench(spawn) ->
    N = env_int("BENCH_N_SPAWN", 1000000),
    Base = erlang:system_info(process_count),
    erlang:garbage_collect(),
    Rss0 = rss_bytes(),
    T0 = now_ns(),
    Pids = spawn_idle(N, []),
    wait_run_queues_empty(),
    T1 = now_ns(),
    Rss1 = rss_bytes(),
    log("spawned ~b processes (N=~b) in ~.3f s, RSS ~b -> ~b MiB",
        [erlang:system_info(process_count) - Base, N, secs(T1 - T0),
         Rss0 bsr 20, Rss1 bsr 20]),
    %% Tear down (not timed): tell each to stop, wait until all are gone.
    [P ! stop || P <- Pids],
    wait_process_count(Base),
    log("stopped all in ~.3f s", [secs(now_ns() - T1)]),
    out(spawn_1m_s, secs(T1 - T0)),
    out(bytes_per_process, round((Rss1 - Rss0) / N));

%% ----------------------------------------------------------------- ring --

%% 10,000 processes, each forwarding the token to the next; the token holds
%% the number of hops left, so exactly RING_SIZE * RING_ROUNDS messages are
%% sent.  Only the token passing is timed, not building the ring.
bench(ring) ->
    Msgs = ?RING_SIZE * ?RING_ROUNDS,
    Self = self(),
    Ring = [spawn(fun() -> receive {next, Next} -> ring_node(Next, Self) end end)
            || _ <- lists:seq(1, ?RING_SIZE)],
    [First | _] = Ring,
    %% Close the ring: each node's successor is the next in the list.
    lists:foreach(fun({P, Next}) -> P ! {next, Next} end,
                  lists:zip(Ring, tl(Ring) ++ [First])),
    T0 = now_ns(),
    First ! {token, Msgs - 1},          % this send is message number 1
    receive ring_done -> ok end,
    T = now_ns() - T0,
    [P ! stop || P <- Ring],
    log("ring: ~b processes x ~b rounds = ~b messages in ~.3f s",
        [?RING_SIZE, ?RING_ROUNDS, Msgs, secs(T)]),
    out(ring_msgs_per_s, round(Msgs / secs(T)));

%% ----------------------------------------------------------------- call --

%% A real gen_server echoing {echo, Term}.  Latency: one caller, each call
%% timed on its own with monotonic_time(nanosecond); p50/p99 are read off
%% the sorted samples.  Throughput: 64 callers hammer the same server with
%% 10,000 calls each; timed from "go" until the last caller finishes.
bench(call) ->
    {ok, Srv} = gen_server:start(?MODULE, [], []),
    {echo, ping} = gen_server:call(Srv, ping),
    timed_calls(Srv, ?CALL_WARMUP, []),
    Sorted = lists:sort(timed_calls(Srv, ?CALL_SAMPLES, [])),
    P50 = percentile(Sorted, 0.50),
    P99 = percentile(Sorted, 0.99),
    Self = self(),
    Callers = [spawn_link(fun() ->
                                  receive go -> ok end,
                                  call_loop(Srv, ?CALLS_EACH),
                                  Self ! {done, self()}
                          end) || _ <- lists:seq(1, ?CALLERS)],
    T0 = now_ns(),
    [C ! go || C <- Callers],
    [receive {done, C} -> ok end || C <- Callers],
    T = now_ns() - T0,
    gen_server:stop(Srv),
    Calls = ?CALLERS * ?CALLS_EACH,
    log("call: ~b samples, min ~b ns, max ~b ns; ~b callers x ~b calls "
        "in ~.3f s", [?CALL_SAMPLES, hd(Sorted), lists:last(Sorted),
                      ?CALLERS, ?CALLS_EACH, secs(T)]),
    out(local_call_p50_us, P50 / 1000),
    out(local_call_p99_us, P99 / 1000),
    out(local_calls_per_s_64, round(Calls / secs(T)));

bench(Other) ->
    error({unknown_kind, Other, [spawn, ring, call, all]}).

%% ------------------------------------------------------------- helpers --

idle() -> receive stop -> ok end.

spawn_idle(0, Acc) -> Acc;
spawn_idle(N, Acc) -> spawn_idle(N - 1, [spawn(fun idle/0) | Acc]).

ring_node(Next, Main) ->
    receive
        {token, 0} -> Main ! ring_done, ring_node(Next, Main);
        {token, K} -> Next ! {token, K - 1}, ring_node(Next, Main);
        stop -> ok
    end.

%% Returns per-call latencies in nanoseconds.
timed_calls(_Srv, 0, Acc) -> Acc;
timed_calls(Srv, N, Acc) ->
    T0 = erlang:monotonic_time(nanosecond),
    {echo, ping} = gen_server:call(Srv, ping),
    T1 = erlang:monotonic_time(nanosecond),
    timed_calls(Srv, N - 1, [T1 - T0 | Acc]).

call_loop(_Srv, 0) -> ok;
call_loop(Srv, N) ->
    {echo, ping} = gen_server:call(Srv, ping),
    call_loop(Srv, N - 1).

%% Nearest-rank percentile of an ascending list.
percentile(Sorted, P) ->
    lists:nth(max(1, ceil(P * length(Sorted))), Sorted).

%% gen_server callbacks: reply immediately.
init([]) -> {ok, nostate}.
handle_call(Term, _From, S) -> {reply, {echo, Term}, S}.
handle_cast(_Msg, S) -> {noreply, S}.

%% Yield until no process is waiting to run, i.e. every spawned process has
%% had its first time slice and is parked in receive.
wait_run_queues_empty() ->
    case erlang:statistics(total_run_queue_lengths_all) of
        0 -> ok;
        _ -> erlang:yield(), wait_run_queues_empty()
    end.

wait_process_count(Base) ->
    case erlang:system_info(process_count) > Base of
        true -> timer:sleep(10), wait_process_count(Base);
        false -> ok
    end.

%% VmRSS of this OS process, in bytes.
rss_bytes() ->
    {ok, Status} = file:read_file("/proc/" ++ os:getpid() ++ "/status"),
    {match, [Kb]} = re:run(Status, "VmRSS:\\s+(\\d+) kB",
                           [{capture, all_but_first, list}]),
    list_to_integer(Kb) * 1024.

env_int(Name, Default) ->
    case os:getenv(Name) of
        false -> Default;
        "" -> Default;
        V -> list_to_integer(V)
    end.

now_ns() -> erlang:monotonic_time(nanosecond).
secs(Ns) -> Ns / 1.0e9.

out(Name, V) when is_integer(V) -> io:format("~s: ~b~n", [Name, V]);
out(Name, V) -> io:format("~s: ~.3f~n", [Name, V]).

log(Fmt, Args) -> io:format(standard_error, Fmt ++ "~n", Args).
