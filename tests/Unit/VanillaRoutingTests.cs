using MoeServe.Routing;
using TorchSharp;
using static TorchSharp.torch;

namespace MoeServe.Unit.Tests;

public class VanillaRoutingTests
{
    /// <summary>Independent reference: sort each row's experts by (probability desc, id asc) with LINQ.</summary>
    private static (long[] Ids, float[] Weights) Reference(float[] row, int k, bool renormalize)
    {
        var chosen = row.Select((p, e) => (p, e)).OrderByDescending(x => x.p).ThenBy(x => x.e).Take(k).ToArray();
        float sum = chosen.Sum(x => x.p);
        return (chosen.Select(x => (long)x.e).ToArray(), chosen.Select(x => renormalize ? x.p / sum : x.p).ToArray());
    }

    [Theory]
    [InlineData(2, 8, true)]   // Mixtral
    [InlineData(8, 64, false)] // OLMoE without norm_topk_prob
    [InlineData(1, 4, true)]
    public void Matches_a_sorted_reference_on_random_gates(int k, int experts, bool renormalize)
    {
        using var scope = NewDisposeScope();
        torch.manual_seed(7);
        var probs = torch.randn(33, experts).mul(3).softmax(1);
        using var a = VanillaRouting.Route(probs, new GateSemantics(k, experts, renormalize));
        var p = probs.data<float>().ToArray();
        var ids = a.ExpertIds.data<long>().ToArray();
        var w = a.Weights.data<float>().ToArray();
        for (int t = 0; t < 33; t++)
        {
            var (refIds, refW) = Reference(p.AsSpan(t * experts, experts).ToArray(), k, renormalize);
            Assert.Equal(refIds, ids.AsSpan(t * k, k).ToArray());
            for (int s = 0; s < k; s++) Assert.Equal(refW[s], w[t * k + s], 5);
        }
    }

    [Fact]
    public void Ties_go_to_the_lower_expert_id()
    {
        using var scope = NewDisposeScope();
        var probs = torch.tensor(new float[] { 0.25f, 0.25f, 0.25f, 0.25f }).reshape(1, 4);
        using var a = VanillaRouting.Route(probs, new GateSemantics(2, 4, true));
        Assert.Equal(new long[] { 0, 1 }, a.ExpertIds.data<long>().ToArray());
        Assert.Equal(new[] { 0.5f, 0.5f }, a.Weights.data<float>().ToArray());
    }

    [Fact]
    public void Rejects_probabilities_of_the_wrong_shape_or_dtype()
    {
        using var scope = NewDisposeScope();
        Assert.Throws<ArgumentException>(() => VanillaRouting.Route(torch.ones(3, 5), new GateSemantics(2, 4, true)));
        Assert.Throws<ArgumentException>(() => VanillaRouting.Route(torch.ones(3, 4, ScalarType.Float64), new GateSemantics(2, 4, true)));
    }
}
