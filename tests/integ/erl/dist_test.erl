%% dist_test.erl - the Erlang side of tests/integ/dist_erl.sh.
%%
%% main([CNode]) runs every case against the C node CNode (running
%% `test-dist_node serve`, which registers the gen_server `t`) and prints one line
%% per case, "ok NAME" or "FAIL NAME: Reason", then halts. erlsrv/0 starts a
%% registered gen_server `erlsrv` that the C node calls back.
-module(dist_test).
-behaviour(gen_server).
-export([main/1, start_erlsrv/0, rotation_caller/1, big_sender/1, latency_probe/1,
         sink/0]).
-export([init/1, handle_call/3, handle_cast/2]).

main([CNodeS]) ->
    CNode = list_to_atom(CNodeS),
    start_erlsrv(),
    Cases = [call, cast, hidden, big_term, concurrent_calls, monitor_noproc,
             call_noproc, link_c_to_erl, link_erl_to_c, unlink, c_calls_erl,
             c_monitors_erl, exit2_kill, monitor_by_name_exit, late_reply_dropped],
    Results = [run(C, CNode) || C <- Cases],
    Failed = length([x || false <- Results]),
    io:format("# erl side: ~p ok, ~p failing~n", [length(Results) - Failed, Failed]),
    halt(0).

run(Case, CNode) ->
    Self = self(),
    {Pid, Ref} = spawn_monitor(fun() -> Self ! {self(), (catch t(Case, CNode))} end),
    receive
        {Pid, ok} -> io:format("ok ~p~n", [Case]), demon(Ref), true;
        {Pid, Other} -> io:format("FAIL ~p: ~p~n", [Case, Other]), demon(Ref), false;
        {'DOWN', Ref, _, _, R} -> io:format("FAIL ~p: died ~p~n", [Case, R]), false
    after 60000 -> io:format("FAIL ~p: timeout~n", [Case]), false
    end.

demon(Ref) -> erlang:demonitor(Ref, [flush]).

%% The C server answers {sleep, 300} after 300 ms; we give up after 100 ms. The
%% reply goes to our call's alias, which is gone by then: nothing may arrive.
t(late_reply_dropped, N) ->
    {'EXIT', {timeout, _}} = (catch gen_server:call({t, N}, {sleep, 300}, 100)),
    receive Stray -> {stray, Stray} after 600 -> ok end;
t(call, N) ->
    {echo, hi} = gen_server:call({t, N}, hi, 5000),
    T = {a, [1, 2.5, <<"x">>], #{k => v}, "str", -123456789012345678901234567890},
    {echo, T} = gen_server:call({t, N}, T),
    Y = 41,
    Funs = {fun(X) -> X + Y end, fun lists:map/2, <<1:3>>, make_ref(), self()},
    {echo, {F1, F2, _, _, _} = Funs} = gen_server:call({t, N}, Funs),
    42 = F1(1),
    [2] = F2(fun(X) -> X * 2 end, [1]),
    ok;
t(cast, N) ->
    ok = gen_server:cast({t, N}, {notify, self()}),
    receive casted -> ok after 5000 -> no_cast end;
t(hidden, N) ->
    true = lists:member(N, nodes(hidden)),
    false = lists:member(N, nodes()),
    ok;
t(big_term, N) ->
    B = crypto:strong_rand_bytes(1 bsl 20),
    {echo, {B, L}} = gen_server:call({t, N}, {B, lists:seq(1, 1000)}, 10000),
    L = lists:seq(1, 1000),
    ok;
t(concurrent_calls, N) ->
    Self = self(),
    T0 = erlang:monotonic_time(millisecond),
    Ps = [spawn_link(fun() ->
              R = [gen_server:call({t, N}, {I, J}, 30000) =:= {echo, {I, J}}
                   || J <- lists:seq(1, 100)],
              Self ! {done, self(), lists:all(fun(X) -> X end, R)}
          end) || I <- lists:seq(1, 100)],
    Res = [receive {done, P, R} -> R after 60000 -> timeout end || P <- Ps],
    Ms = erlang:monotonic_time(millisecond) - T0,
    io:format("# 10000 concurrent calls in ~p ms~n", [Ms]),
    true = lists:all(fun(X) -> X =:= true end, Res),
    ok;
t(monitor_noproc, N) ->
    Ref = erlang:monitor(process, {nosuch, N}),
    receive {'DOWN', Ref, process, {nosuch, N}, noproc} -> ok
    after 5000 -> no_down end;
t(call_noproc, N) ->
    {'EXIT', {noproc, _}} = (catch gen_server:call({nosuch, N}, x, 5000)),
    ok;
t(link_c_to_erl, N) ->
    process_flag(trap_exit, true),
    {ok, P} = gen_server:call({t, N}, {link_to, self()}),
    true = wait_for(fun() -> linked(P) end),
    P ! die,
    receive {'EXIT', P, boom} -> ok after 5000 -> no_exit end;
t(link_erl_to_c, N) ->
    {ok, P} = gen_server:call({t, N}, spawn_plain),
    Ref = erlang:monitor(process, P),
    E = spawn(fun() -> link(P), receive go -> exit(bye) end end),
    timer:sleep(100),
    E ! go,
    receive {'DOWN', Ref, process, P, bye} -> ok
    after 5000 -> no_down end;
t(unlink, N) ->
    process_flag(trap_exit, true),
    {ok, P} = gen_server:call({t, N}, {link_to, self()}),
    %% An unlink before the LINK arrives would be undone by it.
    true = wait_for(fun() -> linked(P) end),
    true = unlink(P),                     % UNLINK_ID to the C node, which acks
    timer:sleep(100),
    P ! die,
    receive {'EXIT', P, R} -> {still_linked, R} after 500 -> ok end;
t(monitor_by_name_exit, N) ->
    {ok, P} = gen_server:call({t, N}, spawn_plain),
    Name = list_to_atom("reg" ++ integer_to_list(erlang:unique_integer([positive]))),
    ok = gen_server:call({t, N}, {register, P, Name}),
    Ref = erlang:monitor(process, {Name, N}),
    exit(P, bang),
    receive {'DOWN', Ref, process, {Name, N}, bang} -> ok after 5000 -> no_down end;
t(c_calls_erl, N) ->
    {ok, {erl_reply, ping}} = gen_server:call({t, N}, {call_back, node(), erlsrv, ping}),
    {error, _} = gen_server:call({t, N}, {call_back, node(), nosuch, ping}),
    ok;
t(c_monitors_erl, N) ->
    V = spawn(fun() -> receive go -> exit(gone) end end),
    ok = gen_server:call({t, N}, {watch, V, self()}),
    %% V must not exit before the monitor is there (the reason would be noproc).
    true = wait_for(fun() -> {monitored_by, M} = process_info(V, monitored_by), M =/= [] end),
    V ! go,
    receive {down_seen, gone} -> ok after 5000 -> no_down end;
t(exit2_kill, N) ->
    {ok, P} = gen_server:call({t, N}, spawn_plain),
    Ref = erlang:monitor(process, P),
    exit(P, kill),
    receive {'DOWN', Ref, process, P, killed} -> ok after 5000 -> no_down end.

%% The C node links and monitors from a process it spawns, which runs after the
%% call's reply: wait until Pred() holds (5 s at most) rather than a fixed time.
wait_for(Pred) -> wait_for(Pred, 500).
wait_for(Pred, 0) -> Pred();
wait_for(Pred, K) ->
    case Pred() of
        true -> true;
        false -> timer:sleep(10), wait_for(Pred, K - 1)
    end.

linked(P) ->
    {links, L} = process_info(self(), links),
    lists:member(P, L).

%% ---- erlsrv: a plain OTP server the C node calls ----------------------------

start_erlsrv() ->
    {ok, _} = gen_server:start({local, erlsrv}, ?MODULE, [], []),
    ok.

init([]) -> {ok, nostate}.
handle_call({sleep, Ms}, _From, S) -> timer:sleep(Ms), {reply, {slept, Ms}, S};
handle_call(Req, _From, S) -> {reply, {erl_reply, Req}, S}.
handle_cast(_, S) -> {noreply, S}.

%% ---- cookie rotation: call in a loop until told to stop, count failures ------

%% Calls until StopFile exists, then 200 more (so that calls are shown to go on
%% after whatever the test did before creating it); 120 s at most.
rotation_caller([CNodeS, StopFile]) ->
    CNode = list_to_atom(CNodeS),
    Until = erlang:monotonic_time(millisecond) + 120000,
    {Ok, Bad} = loop(CNode, StopFile, Until, none, 0, 0),
    io:format("rotation calls=~p failed=~p~n", [Ok + Bad, Bad]),
    halt(0).

loop(N, StopFile, Until, Left, Ok, Bad) ->
    Left1 = case Left =:= none andalso filelib:is_file(StopFile) of
                true -> 200;
                false -> Left
            end,
    case Left1 =:= 0 orelse erlang:monotonic_time(millisecond) >= Until of
        true -> {Ok, Bad};
        false ->
            Left2 = case Left1 of none -> none; _ -> Left1 - 1 end,
            case catch gen_server:call({t, N}, ping, 5000) of
                {echo, ping} ->
                    %% The test rotates the cookie once it sees this line.
                    Ok =:= 0 andalso io:format("rotation connected~n"),
                    loop(N, StopFile, Until, Left2, Ok + 1, Bad);
                Other -> io:format("# call failed: ~p~n", [Other]), timer:sleep(50),
                         loop(N, StopFile, Until, Left2, Ok, Bad + 1)
            end
    end.

%% ---- big messages: 16 MiB calls, a latency probe, a counting sink -------------

big_sender([CNodeS, CountS]) ->
    CNode = list_to_atom(CNodeS),
    B = binary:copy(<<"0123456789abcdef">>, 1 bsl 20),          % 16 MiB
    T0 = erlang:monotonic_time(millisecond),
    Ok = [gen_server:call({t, CNode}, B, 60000) =:= {echo, B}
          || _ <- lists:seq(1, list_to_integer(CountS))],
    io:format("big calls ok=~p ms=~p~n",
              [lists:all(fun(X) -> X end, Ok), erlang:monotonic_time(millisecond) - T0]),
    halt(0).

latency_probe([CNodeS, MsS]) ->
    CNode = list_to_atom(CNodeS),
    Until = erlang:monotonic_time(millisecond) + list_to_integer(MsS),
    {N, Max, Bad} = probe(CNode, Until, 0, 0, 0),
    io:format("probe calls=~p max_ms=~p failed=~p~n", [N, Max, Bad]),
    halt(0).

probe(N, Until, Count, Max, Bad) ->
    T0 = erlang:monotonic_time(millisecond),
    case T0 >= Until of
        true -> {Count, Max, Bad};
        false ->
            R = (catch gen_server:call({t, N}, ping, 10000)),
            Ms = erlang:monotonic_time(millisecond) - T0,
            Bad1 = case R of {echo, ping} -> Bad; _ -> Bad + 1 end,
            timer:sleep(5),
            probe(N, Until, Count + 1, max(Max, Ms), Bad1)
    end.

sink() ->
    register(sink, self()),
    io:format("sink ready~n"),
    sink_loop(0, 0).

sink_loop(N, Bytes) ->
    receive
        done -> io:format("sink got ~p messages, ~p bytes~n", [N, Bytes]), sink_loop(N, Bytes);
        B when is_binary(B) -> sink_loop(N + 1, Bytes + byte_size(B))
    end.
