using System.Diagnostics;
using System.Threading.Channels;
using MoeServe.Inference.Sampling;

namespace MoeServe.Inference.Engine;

/// <summary>
/// Engine-side state of one generating sequence, owned by its engine loop's thread. Its tokens are the prompt
/// followed by what it generated; ComputedTokens of them have keys and values in the cache. Prefill,
/// chunked prefill, decode and recompute after preemption are all "compute the uncomputed tokens".
/// </summary>
public sealed class Sequence(long id, GenerationRequest request, OutputProcessor output, Channel<SequenceEvent> events)
{
    public long Id { get; } = id;
    public GenerationRequest Request { get; } = request;
    public OutputProcessor Output { get; } = output;
    public Sampler Sampler { get; } = new(request.Sampling);
    public ChannelWriter<SequenceEvent> Events => events.Writer;

    /// <summary>Prompt ids, then generated ids.</summary>
    public List<int> Tokens { get; } = [.. request.PromptIds];
    public int PromptLength => Request.PromptIds.Length;
    public int Generated => Tokens.Count - PromptLength;

    /// <summary>Tokens whose keys and values are in the cache.</summary>
    public int ComputedTokens { get; set; }
    public int Uncomputed => Tokens.Count - ComputedTokens;

    /// <summary>Cache blocks held, in position order.</summary>
    public List<int> Blocks { get; } = [];

    /// <summary>Prompt logprobs gathered so far (first pass over the prompt only).</summary>
    public List<PromptTokenLogprob>? PromptLogprobs { get; set; }
    public bool PromptLogprobsDone { get; set; }
    public bool WantsPromptLogprobs => Request.PromptLogprobs && !PromptLogprobsDone;

    public long QueuedAt { get; } = Stopwatch.GetTimestamp();
    public long StartedAt { get; set; }
    public long LastTokenAt { get; set; }
    public int Preemptions { get; set; }

    /// <summary>Token-expert pairs of this sequence dropped by capacity, over all layers and steps.</summary>
    public long DroppedPairs { get; set; }

    /// <summary>Token-expert pairs of this sequence moved outside their vanilla top-k.</summary>
    public long ReroutedPairs { get; set; }
    public volatile bool CancelRequested;
}
