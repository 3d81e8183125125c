using System.ComponentModel.DataAnnotations;

namespace MoeServe.Inference.Engine;

/// <summary>Scheduler limits (configuration section "Engine").</summary>
public sealed class EngineOptions : IValidatableObject
{
    public const string Section = "Engine";

    /// <summary>Sequences decoding together in one step.</summary>
    [Range(1, 4096)] public int MaxRunningSequences { get; set; } = 64;

    /// <summary>Tokens (prefill chunks plus decode tokens) in one step's flat batch.</summary>
    [Range(16, 1_000_000)] public int MaxBatchedTokens { get; set; } = 1024;

    /// <summary>Prompt tokens a step takes at least while other sequences decode (chunked prefill): a prompt
    /// admitted next to decoding sequences is computed in chunks, so one long prefill cannot stall their
    /// next tokens. A step with no decoding sequence fills <see cref="MaxBatchedTokens"/>.</summary>
    [Range(1, 1_000_000)] public int PrefillChunkTokens { get; set; } = 32;

    /// <summary>More prompt tokens allowed per decoding sequence in the step, so that a large decode batch
    /// still admits new prompts as fast as its sequences finish: a step's prompt tokens while decoding are
    /// max(PrefillChunkTokens, PrefillTokensPerDecode x decoding sequences), within MaxBatchedTokens.</summary>
    [Range(0, 1_000_000)] public int PrefillTokensPerDecode { get; set; } = 2;

    /// <summary>Requests waiting for a slot; one more is refused with 429.</summary>
    [Range(0, 1_000_000)] public int MaxQueuedRequests { get; set; } = 256;

    /// <summary>Key/value cache budget in tokens, over all sequences (memory: tokens x layers x 2 x kv heads x head dim x dtype size).</summary>
    [Range(1, 100_000_000)] public int KvCacheTokens { get; set; } = 65536;

    /// <summary>Tokens per key/value cache block.</summary>
    [Range(1, 1024)] public int KvBlockSize { get; set; } = 16;

    /// <summary>Intra-op threads of libtorch on each engine loop's thread (0 = libtorch's default).</summary>
    [Range(0, 1024)] public int TorchThreads { get; set; }

    /// <summary>Independent engine loops, each on its own thread with an equal share of the running sequences and the
    /// key/value cache, sharing the weights; a request goes to the least busy loop. Their steps run side by side without
    /// waiting for each other. 1: one loop, every running sequence in one step.</summary>
    [Range(1, 64)] public int Loops { get; set; } = 1;

    /// <summary>Threads that run one step's sequences through the model at once, each thread a contiguous part of
    /// them (data parallelism inside a step), on steps where every token routes on its own (vanilla, or capacity
    /// policies on decode steps without Routing:ApplyToDecode). 1: the loop's thread alone.</summary>
    [Range(1, 256)] public int StepThreads { get; set; } = 1;

    public IEnumerable<ValidationResult> Validate(ValidationContext context)
    {
        if (MaxRunningSequences < Loops)
            yield return new ValidationResult($"must be at least Engine:Loops ({Loops}): every loop needs a running slot", [nameof(MaxRunningSequences)]);
    }
}
