using MoeServe.Inference.Sampling;

namespace MoeServe.Unit.Tests;

public class SamplerTests
{
    private static float[] Logits(int seed, int vocab = 50)
    {
        var r = new Random(seed);
        return Enumerable.Range(0, vocab).Select(_ => (float)(r.NextDouble() * 8 - 4)).ToArray();
    }

    [Fact]
    public void Greedy_picks_the_argmax_and_reports_its_log_softmax()
    {
        var logits = Logits(1);
        var token = new Sampler(new SamplingParameters { Temperature = 0 }).Sample(logits);
        int expected = Array.IndexOf(logits, logits.Max());
        Assert.Equal(expected, token.TokenId);
        double logZ = Math.Log(logits.Sum(l => Math.Exp(l)));
        Assert.Equal(logits[expected] - logZ, token.Logprob, 5);
    }

    [Fact]
    public void Log_softmax_is_a_distribution()
    {
        var lp = Sampler.LogSoftmax(Logits(2));
        Assert.Equal(1.0, lp.Sum(x => Math.Exp(x)), 5);
    }

    [Fact]
    public void Same_seed_gives_the_same_samples_and_different_seeds_differ()
    {
        var logits = Logits(3);
        int[] Run(long seed)
        {
            var s = new Sampler(new SamplingParameters { Temperature = 1.0, Seed = seed });
            return Enumerable.Range(0, 40).Select(_ => s.Sample(logits).TokenId).ToArray();
        }
        Assert.Equal(Run(42), Run(42));
        Assert.NotEqual(Run(42), Run(43));
    }

    [Fact]
    public void Top_k_one_is_greedy_whatever_the_temperature()
    {
        var logits = Logits(4);
        var s = new Sampler(new SamplingParameters { Temperature = 2.0, TopK = 1, Seed = 1 });
        int argmax = Array.IndexOf(logits, logits.Max());
        for (int i = 0; i < 20; i++) Assert.Equal(argmax, s.Sample(logits).TokenId);
    }

    [Fact]
    public void Top_p_keeps_only_the_nucleus()
    {
        // One token holds ~88% of the mass: top_p 0.5 must always choose it.
        var logits = new float[10];
        logits[3] = 5;
        var s = new Sampler(new SamplingParameters { Temperature = 1.0, TopP = 0.5, Seed = 9 });
        for (int i = 0; i < 50; i++) Assert.Equal(3, s.Sample(logits).TokenId);
    }

    [Fact]
    public void Frequency_penalty_moves_greedy_off_a_repeated_token()
    {
        var logits = new float[] { 1.0f, 0.9f, 0f };
        var s = new Sampler(new SamplingParameters { Temperature = 0, FrequencyPenalty = 2.0 });
        Assert.Equal(0, s.Sample(logits).TokenId);
        Assert.Equal(1, s.Sample(logits).TokenId); // token 0 now scores 1.0 - 2.0
    }

    [Fact]
    public void Sampling_frequencies_follow_the_softmax()
    {
        var logits = new float[] { 0f, (float)Math.Log(3) }; // p = 0.25, 0.75
        var s = new Sampler(new SamplingParameters { Temperature = 1.0, Seed = 5 });
        int ones = Enumerable.Range(0, 4000).Count(_ => s.Sample(logits).TokenId == 1);
        Assert.InRange(ones / 4000.0, 0.72, 0.78);
    }

    [Fact]
    public void Top_logprobs_are_sorted_and_complete()
    {
        var lp = Sampler.LogSoftmax(Logits(6));
        var top = Sampler.TopLogprobs(lp, 0f, 5);
        var expected = lp.Select((v, i) => (v, i)).OrderByDescending(x => x.v).ThenBy(x => x.i).Take(5).Select(x => x.i);
        Assert.Equal(expected, top.Select(t => t.TokenId));
    }

    [Fact]
    public void A_sampled_token_reports_the_log_softmax_values_to_the_bit()
    {
        // Sample computes logit - logZ without the [V] array; it must give exactly what LogSoftmax gives.
        var logits = Logits(17, vocab: 4096);
        var lp = Sampler.LogSoftmax(logits);
        var token = new Sampler(new SamplingParameters { Temperature = 0, TopLogprobs = 5 }).Sample(logits);
        Assert.Equal(lp[token.TokenId], token.Logprob);
        var expected = Sampler.TopLogprobs(lp, 0f, 5);
        Assert.Equal(expected.Select(t => (t.TokenId, t.Logprob)), token.TopLogprobs.Select(t => (t.TokenId, t.Logprob)));
        // And log-softmax itself against float64.
        double max = logits.Max(), logZ = max + Math.Log(logits.Sum(v => Math.Exp(v - max)));
        Assert.All(Enumerable.Range(0, logits.Length), i => Assert.True(Math.Abs(lp[i] - (logits[i] - logZ)) < 1e-5));
    }
}
