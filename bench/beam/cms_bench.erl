%% cms_bench.erl - the erl half of `make bench-cms` (bench/cms.sh): an erl node
%% calling the `cms` gen_server of a oneblog-cms node, as bench-cms cnode-client
%% does from libcnode. {get_post, Slug} with a random slug of bench-post-0000 ..
%% bench-post-NNNN, and {list_posts, #{page => P}} with P cycling 1..10: p50 of
%% sequential calls, then calls/s with 64 erl processes calling at once.
%% Prints get_p50_us, list_p50_us, get_calls_per_s_64, list_calls_per_s_64.
%% Environment: BENCH_CMS_SAMPLES (2000), BENCH_CMS_CALLS (100), BENCH_CMS_POSTS (1000).
-module(cms_bench).
-export([client/1]).

-define(CALLERS, 64).

client(Node) when is_list(Node) -> client(list_to_atom(Node));
client(Node) ->
    Code = try run(Node), 0
           catch C:R:St ->
                   io:format(standard_error, "cms_bench: ~p:~p~n~p~n", [C, R, St]),
                   1
           end,
    erlang:halt(Code).

run(Node) ->
    Samples = env_int("BENCH_CMS_SAMPLES", 2000),
    Each = env_int("BENCH_CMS_CALLS", 100),
    Posts = env_int("BENCH_CMS_POSTS", 1000),
    true = net_kernel:connect_node(Node),
    Srv = {cms, Node},
    rand:seed(exsss, {1, 2, 3}),
    P50 = [begin
               timed(Srv, Op, Posts, Samples div 10, []),
               Sorted = lists:sort(timed(Srv, Op, Posts, Samples, [])),
               {Op, lists:nth(max(1, ceil(0.5 * length(Sorted))), Sorted) / 1000}
           end || Op <- [get, list]],
    Rates = [{Op, rate(Srv, Op, Posts, Each)} || Op <- [get, list]],
    [io:format("~s_p50_us: ~.1f~n", [Op, V]) || {Op, V} <- P50],
    [io:format("~s_calls_per_s_64: ~b~n", [Op, V]) || {Op, V} <- Rates],
    ok.

rate(Srv, Op, Posts, Each) ->
    Self = self(),
    Callers = [spawn_link(fun() ->
                                  receive go -> ok end,
                                  loop(Srv, Op, Posts, Each),
                                  Self ! {done, self()}
                          end) || _ <- lists:seq(1, ?CALLERS)],
    T0 = erlang:monotonic_time(nanosecond),
    [C ! go || C <- Callers],
    [receive {done, C} -> ok end || C <- Callers],
    T = erlang:monotonic_time(nanosecond) - T0,
    round(?CALLERS * Each / (T / 1.0e9)).

req(get, Posts, _I) ->
    {get_post, iolist_to_binary(io_lib:format("bench-post-~4..0b", [rand:uniform(Posts) - 1]))};
req(list, _Posts, I) ->
    {list_posts, #{page => I rem 10 + 1}}.

call(Srv, Req) ->
    {ok, _} = gen_server:call(Srv, Req, 30000).

timed(_Srv, _Op, _Posts, 0, Acc) -> Acc;
timed(Srv, Op, Posts, N, Acc) ->
    Req = req(Op, Posts, N),
    T0 = erlang:monotonic_time(nanosecond),
    call(Srv, Req),
    T1 = erlang:monotonic_time(nanosecond),
    timed(Srv, Op, Posts, N - 1, [T1 - T0 | Acc]).

loop(_Srv, _Op, _Posts, 0) -> ok;
loop(Srv, Op, Posts, N) ->
    call(Srv, req(Op, Posts, N)),
    loop(Srv, Op, Posts, N - 1).

env_int(Name, Default) ->
    case os:getenv(Name) of
        false -> Default;
        "" -> Default;
        V -> list_to_integer(V)
    end.
