using MoeServe.Routing;
using TorchSharp;
using static TorchSharp.torch;

namespace MoeServe.Unit.Tests;

/// <summary>Invariants of the four policies on random and adversarial gate scores, and independent references.</summary>
public class RoutingPolicyTests
{
    private static Tensor RandomProbs(int tokens, int experts, int seed, double sharpness = 3.0)
    {
        torch.manual_seed(seed);
        return (torch.randn(tokens, experts) * sharpness).softmax(1);
    }

    /// <summary>Every token prefers expert 0, then 1: the worst case for capacity.</summary>
    private static Tensor Adversarial(int tokens, int experts)
    {
        var logits = torch.arange(experts, ScalarType.Float32).neg().unsqueeze(0).repeat(tokens, 1) // [T, E]
                     + torch.linspace(0, 0.5, tokens).unsqueeze(1) * torch.ones(1, experts);
        return logits.softmax(1);
    }

    private static (long[] Ids, float[] Weights, int Slots) Host(RoutingResult r) =>
        (r.Assignment.ExpertIds.contiguous().data<long>().ToArray(), r.Assignment.Weights.contiguous().data<float>().ToArray(),
         (int)r.Assignment.ExpertIds.shape[1]);

    private static long[] Loads(long[] ids, int experts, Func<int, bool>? tokenFilter = null, int slots = 1)
    {
        var loads = new long[experts];
        for (int i = 0; i < ids.Length; i++)
            if (ids[i] >= 0 && (tokenFilter?.Invoke(i / slots) ?? true)) loads[ids[i]]++;
        return loads;
    }

    public static TheoryData<string, int, int, int, double> CapacityCases() => new()
    {
        { "random", 64, 8, 2, 1.0 }, { "random", 37, 8, 2, 1.25 }, { "random", 100, 16, 4, 0.5 },
        { "adversarial", 64, 8, 2, 1.0 }, { "adversarial", 10, 4, 1, 2.0 }, { "random", 1, 8, 2, 1.0 },
    };

    [Theory]
    [MemberData(nameof(CapacityCases))]
    public void Token_drop_and_expanded_drop_never_exceed_capacity(string gates, int t, int e, int k, double gamma)
    {
        using var scope = NewDisposeScope();
        var probs = gates == "random" ? RandomProbs(t, e, 11) : Adversarial(t, e);
        var gate = new GateSemantics(k, e, true);
        long c = Capacity.Of(gamma, k, t, e);
        foreach (var policy in new[] { RoutingPolicy.TokenDrop, RoutingPolicy.ExpandedDrop })
            foreach (var strategy in Enum.GetValues<TokenDropStrategy>())
            {
                using var r = LayerRouter.Route(probs, gate, BatchRouting.All(t, policy, gamma, new RoutingConfig { Strategy = strategy, Scope = LocalScope.All }), 0);
                var (ids, _, slots) = Host(r);
                Assert.All(Loads(ids, e, slots: slots), n => Assert.True(n <= c, $"{policy}/{strategy}: load {n} > C = {c}"));
            }
    }

    /// <summary>Independent reference of token_drop (strategy score): per expert, keep the C highest p, ties to the lower token.</summary>
    [Theory]
    [InlineData(64, 8, 2, 1.0, true)]
    [InlineData(50, 8, 2, 1.0, false)]
    [InlineData(33, 6, 3, 0.75, true)]
    public void Token_drop_score_matches_a_direct_reference(int t, int e, int k, double gamma, bool renormalize)
    {
        using var scope = NewDisposeScope();
        var probs = RandomProbs(t, e, 5, sharpness: 2.0);
        var gate = new GateSemantics(k, e, renormalize);
        using var r = LayerRouter.Route(probs, gate, BatchRouting.All(t, RoutingPolicy.TokenDrop, gamma), 0);
        var (ids, weights, slots) = Host(r);

        var p = probs.data<float>().ToArray();
        long c = Capacity.Of(gamma, k, t, e);
        var top = Enumerable.Range(0, t).Select(i => Enumerable.Range(0, e).OrderByDescending(x => p[i * e + x]).ThenBy(x => x).Take(k).ToArray()).ToArray();
        var kept = new HashSet<(int, int)>();
        for (int x = 0; x < e; x++)
            foreach (var i in Enumerable.Range(0, t).Where(i => top[i].Contains(x)).OrderByDescending(i => p[i * e + x]).ThenBy(i => i).Take((int)c))
                kept.Add((i, x));
        long droppedExpected = 0;
        for (int i = 0; i < t; i++)
        {
            float sum = top[i].Sum(x => p[i * e + x]);
            for (int j = 0; j < k; j++)
            {
                int x = top[i][j];
                bool keep = kept.Contains((i, x));
                Assert.Equal(keep ? x : -1, ids[i * slots + j]);
                float native = renormalize ? p[i * e + x] / sum : p[i * e + x];
                Assert.Equal(keep ? native : 0f, weights[i * slots + j], 5);
                if (!keep) droppedExpected++;
            }
        }
        Assert.Equal(droppedExpected, r.DroppedPerToken.Sum());
        Assert.Equal(droppedExpected, r.DroppedPerExpert.GetValueOrDefault(RoutingPolicy.TokenDrop)?.Sum() ?? 0);
    }

    [Theory]
    [InlineData(TokenDropStrategy.First)]
    [InlineData(TokenDropStrategy.Last)]
    public void First_and_last_keep_the_earliest_or_latest_tokens(TokenDropStrategy strategy)
    {
        using var scope = NewDisposeScope();
        int t = 20, e = 4;
        var probs = Adversarial(t, e); // every token picks experts 0 and 1
        using var r = LayerRouter.Route(probs, new GateSemantics(2, e, true), BatchRouting.All(t, RoutingPolicy.TokenDrop, 1.0, new RoutingConfig { Strategy = strategy }), 0);
        var (ids, _, slots) = Host(r);
        long c = Capacity.Of(1.0, 2, t, e); // 10
        var keptTokens = Enumerable.Range(0, t).Where(i => ids[i * slots] >= 0).ToArray();
        var expected = strategy == TokenDropStrategy.First ? Enumerable.Range(0, (int)c) : Enumerable.Range(t - (int)c, (int)c);
        Assert.Equal(expected, keptTokens);
    }

    [Fact]
    public void Random_strategy_is_seeded_and_respects_capacity()
    {
        using var scope = NewDisposeScope();
        var probs = Adversarial(40, 8);
        var gate = new GateSemantics(2, 8, true);
        long[] Run(int seed)
        {
            using var r = LayerRouter.Route(probs, gate, BatchRouting.All(40, RoutingPolicy.TokenDrop, 1.0, new RoutingConfig { Strategy = TokenDropStrategy.Random, Seed = seed }), 0);
            return Host(r).Ids;
        }
        Assert.Equal(Run(1), Run(1));
        Assert.NotEqual(Run(1), Run(2));
    }

    [Theory]
    [InlineData(2, 8, true)]
    [InlineData(4, 16, false)]
    public void Laser_with_pool_k_equals_vanilla(int k, int e, bool renormalize)
    {
        using var scope = NewDisposeScope();
        var probs = RandomProbs(50, e, 3, sharpness: 0.5); // flat scores: LASER would reroute if it could
        var gate = new GateSemantics(k, e, renormalize);
        var config = new RoutingConfig { Laser = new LaserParameters(PoolSize: k, EpsHigh: 0.99) };
        using var laser = LayerRouter.Route(probs, gate, BatchRouting.All(50, RoutingPolicy.Laser, config: config), 0);
        using var vanilla = VanillaRouting.Route(probs, gate);
        Assert.Equal(vanilla.ExpertIds.data<long>().ToArray(), laser.Assignment.ExpertIds.contiguous().data<long>().ToArray());
        Assert.Equal(vanilla.Weights.contiguous().data<float>().ToArray(), laser.Assignment.Weights.contiguous().data<float>().ToArray());
        Assert.Equal(0, laser.ReroutedPerToken.Sum());
    }

    [Fact]
    public void Laser_picks_from_its_pool_and_balances_flat_tokens()
    {
        using var scope = NewDisposeScope();
        int t = 200, e = 8, k = 2;
        var probs = RandomProbs(t, e, 4, sharpness: 0.3);
        var gate = new GateSemantics(k, e, true);
        var config = new RoutingConfig { Laser = new LaserParameters(PoolSize: 4, EpsHigh: 0.99) };
        using var laser = LayerRouter.Route(probs, gate, BatchRouting.All(t, RoutingPolicy.Laser, config: config), 0);
        using var vanilla = VanillaRouting.Route(probs, gate);
        var p = probs.data<float>().ToArray();
        var (ids, _, slots) = Host(laser);
        for (int i = 0; i < t; i++)
        {
            var pool = Enumerable.Range(0, e).OrderByDescending(x => p[i * e + x]).ThenBy(x => x).Take(4).ToHashSet();
            for (int j = 0; j < k; j++) Assert.Contains((int)ids[i * slots + j], pool);
        }
        double Imbalance(long[] loads) => loads.Max() / loads.Average();
        Assert.True(Imbalance(Loads(ids, e)) < Imbalance(Loads(vanilla.ExpertIds.data<long>().ToArray(), e)));
    }

    [Fact]
    public void Expanded_drop_uses_only_candidates_and_local_experts()
    {
        using var scope = NewDisposeScope();
        int t = 64, e = 8, k = 2;
        var probs = RandomProbs(t, e, 9);
        var gate = new GateSemantics(k, e, true);
        // Layer 1's map differs from layer 0's: the router must read the map of the layer it routes.
        var placement = ExpertPlacement.Explicit([[0, 0, 1, 1, 2, 2, 3, 3], [0, 1, 2, 3, 3, 2, 1, 0]], e, 4);
        int[] device = placement.Layer(1);
        var config = new RoutingConfig { Scope = LocalScope.Device, ExtraCandidates = 2 };
        using var r = LayerRouter.Route(probs, gate, BatchRouting.All(t, RoutingPolicy.ExpandedDrop, 1.0, config, placement: placement), 1);
        var (ids, weights, slots) = Host(r);
        Assert.Equal(k + 2, slots);
        var p = probs.data<float>().ToArray();
        for (int i = 0; i < t; i++)
        {
            var top = Enumerable.Range(0, e).OrderByDescending(x => p[i * e + x]).ThenBy(x => x).Take(k).ToArray();
            var localDevices = top.Select(x => device[x]).ToHashSet();
            var extras = Enumerable.Range(0, e).Where(x => !top.Contains(x) && localDevices.Contains(device[x]))
                .OrderByDescending(x => p[i * e + x]).ThenBy(x => x).Take(2).ToHashSet();
            for (int j = 0; j < slots; j++)
            {
                long x = ids[i * slots + j];
                if (x < 0) { Assert.Equal(0f, weights[i * slots + j]); continue; }
                Assert.True(j < k ? x == top[j] : extras.Contains((int)x), $"token {i} slot {j}: expert {x} is not a candidate");
            }
        }
        Assert.All(Loads(ids, e), n => Assert.True(n <= Capacity.Of(1.0, k, t, e)));
    }

    [Fact]
    public void Expanded_drop_with_every_expert_local_and_m_equal_E_minus_k_balances_perfectly()
    {
        using var scope = NewDisposeScope();
        int t = 64, e = 8, k = 2;
        var probs = Adversarial(t, e);
        var config = new RoutingConfig { Scope = LocalScope.All, ExtraCandidates = e - k };
        using var r = LayerRouter.Route(probs, new GateSemantics(k, e, true), BatchRouting.All(t, RoutingPolicy.ExpandedDrop, 1.0, config), 0);
        var loads = Loads(Host(r).Ids, e);
        Assert.All(loads, n => Assert.Equal(Capacity.Of(1.0, k, t, e), n)); // expert choice: every expert full
    }

    [Fact]
    public void In_a_mixed_batch_vanilla_tokens_keep_their_experts_and_capacity_tokens_fill_what_is_left()
    {
        using var scope = NewDisposeScope();
        int t = 40, e = 4, k = 2;
        var probs = Adversarial(t, e);
        var policies = Enumerable.Range(0, t).Select(i => i % 2 == 0 ? RoutingPolicy.Vanilla : RoutingPolicy.TokenDrop).ToArray();
        var batch = new BatchRouting(policies, Enumerable.Repeat(1.0, t).ToArray(), RoutingConfig.Default, decodeOnly: false);
        using var r = LayerRouter.Route(probs, new GateSemantics(k, e, true), batch, 0);
        var (ids, _, slots) = Host(r);
        for (int i = 0; i < t; i += 2) { Assert.Equal(0, ids[i * slots]); Assert.Equal(1, ids[i * slots + 1]); }
        long c = Capacity.Of(1.0, k, t, e); // 20: the 20 vanilla tokens fill experts 0 and 1
        var capacityLoads = Loads(ids, e, token => policies[token] == RoutingPolicy.TokenDrop, slots);
        Assert.Equal(0, capacityLoads[0]);
        Assert.Equal(0, capacityLoads[1]);
        Assert.Equal(20 * k, r.DroppedPerToken.Sum());
    }

    [Fact]
    public void Capacity_is_not_enforced_on_decode_only_steps_unless_asked()
    {
        using var scope = NewDisposeScope();
        var probs = Adversarial(8, 8); // C = 2: without the flag every token keeps its top-2
        var gate = new GateSemantics(2, 8, true);
        using var off = LayerRouter.Route(probs, gate, BatchRouting.All(8, RoutingPolicy.TokenDrop, 1.0, decodeOnly: true), 0);
        Assert.Equal(0, off.DroppedPerToken.Sum());
        using var on = LayerRouter.Route(probs, gate, BatchRouting.All(8, RoutingPolicy.TokenDrop, 1.0, new RoutingConfig { ApplyToDecode = true }, decodeOnly: true), 0);
        Assert.True(on.DroppedPerToken.Sum() > 0);
    }

    [Fact]
    public void Every_policy_is_deterministic()
    {
        using var scope = NewDisposeScope();
        var probs = RandomProbs(48, 8, 21, sharpness: 1.0);
        var gate = new GateSemantics(2, 8, true);
        foreach (var policy in Enum.GetValues<RoutingPolicy>())
        {
            using var a = LayerRouter.Route(probs, gate, BatchRouting.All(48, policy, 0.8), 0);
            using var b = LayerRouter.Route(probs.clone(), gate, BatchRouting.All(48, policy, 0.8), 0);
            Assert.Equal(Host(a).Ids, Host(b).Ids);
            Assert.Equal(Host(a).Weights, Host(b).Weights);
        }
    }

    [Theory]
    [InlineData(1.0, 2, 12, 8, 3)]
    [InlineData(1.25, 2, 12, 8, 4)]
    [InlineData(0.01, 2, 12, 8, 1)]
    [InlineData(100, 2, 12, 8, 12)]
    public void Capacity_formula(double gamma, int k, int t, int e, long expected) => Assert.Equal(expected, Capacity.Of(gamma, k, t, e));
}
