using TorchSharp;
using static TorchSharp.torch;

namespace MoeServe.Training.Model;

/// <summary>
/// The Switch Transformer load-balancing loss, E * sum_e f_e * P_e, where f_e is the fraction of
/// token-expert assignments that went to expert e and P_e the mean router probability of e. It is 1 when
/// routing is perfectly uniform and grows as tokens (and probability) pile onto few experts. Gradients
/// flow through P only (f comes from the discrete top-k choice).
/// </summary>
/// <remarks>
/// Hugging Face's load_balancing_loss_func counts each of the k slots as a full token, so its value is
/// k times this one (2 at uniform routing for top-2); coefficients convert accordingly.
/// </remarks>
public static class LoadBalancing
{
    /// <param name="probs">[N, E] float32 router probabilities (softmax over experts) of every token.</param>
    /// <param name="expertCounts">[E] token-expert assignments per expert (they sum to N * k).</param>
    /// <returns>Scalar float32 tensor.</returns>
    public static Tensor AuxLoss(Tensor probs, long[] expertCounts)
    {
        int experts = expertCounts.Length;
        if (probs.dim() != 2 || probs.shape[1] != experts)
            throw new ArgumentException($"probabilities must be [N, {experts}], got [{string.Join(", ", probs.shape)}]");
        long total = expertCounts.Sum();
        if (total == 0) throw new ArgumentException("no token-expert assignments");
        using var scope = NewDisposeScope();
        var fraction = torch.tensor(expertCounts.Select(c => (float)((double)c / total)).ToArray(), device: probs.device); // [E] f_e
        var meanProb = probs.mean([0L]);                                                                                 // [E] P_e
        return (fraction * meanProb).sum().mul(experts).MoveToOuterDisposeScope();
    }
}
