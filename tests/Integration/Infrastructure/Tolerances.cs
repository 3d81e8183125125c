namespace MoeServe.Integration.Tests.Infrastructure;

/// <summary>How far logprobs of the same greedy tokens may move when only the batching differs.</summary>
public static class Tolerances
{
    /// <summary>
    /// Alone against batched with other requests, under the default Model:ExpertDtype (float16 experts through
    /// FBGEMM for the shipped BF16 checkpoint on CPU: float32 arithmetic, whose result for a row does not depend
    /// on the rows beside it). Only float32 summation order differs (attention products of 1-3 rows take another
    /// kernel than 4 or more): measured up to 6.2e-6 nats on the shipped model (16 prompts of 24 tokens).
    /// bfloat16 experts, which round their rows, move them by up to 8e-3. A wrong expert or a wrong cache moves
    /// logprobs by tenths.
    /// </summary>
    public const double BatchedLogprob = 1e-4;
}
