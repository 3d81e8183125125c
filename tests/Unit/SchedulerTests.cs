using System.Threading.Channels;
using MoeServe.Inference.Checkpoint;
using MoeServe.Inference.Engine;
using MoeServe.Inference.Sampling;
using MoeServe.Inference.Tokenization;

namespace MoeServe.Unit.Tests;

/// <summary>The scheduler's token budget: decodes first, then prompt chunks, capped while sequences decode.</summary>
public class SchedulerTests
{
    private static readonly string Dir = RepositoryPaths.Fixture("mixtral-tiny-bf16-sharded");
    private static readonly ModelTokenizer Tokenizer = ModelTokenizer.Load(Dir, ModelConfig.Load(Dir));
    private long _nextId;

    private Sequence NewSequence(int promptLength)
    {
        var request = new GenerationRequest
        {
            PromptIds = Enumerable.Range(10, promptLength).ToArray(), Sampling = new SamplingParameters { Temperature = 0 }, MaxTokens = 100,
        };
        return new Sequence(++_nextId, request, new OutputProcessor(Tokenizer, request), Channel.CreateUnbounded<SequenceEvent>());
    }

    private static Scheduler NewScheduler(EngineOptions options) => new(options, new BlockAllocator(4096, 16));

    /// <summary>What the engine does after a step: the tokens are computed, and a sequence with none left samples one more.</summary>
    private static void Complete(ScheduledBatch batch, IReadOnlyDictionary<long, Sequence> sequences)
    {
        foreach (var (id, tokens) in batch.Sequences)
        {
            var s = sequences[id];
            s.ComputedTokens += tokens;
            if (s.Uncomputed == 0) s.Tokens.Add(7);
        }
    }

    /// <summary>Starts <paramref name="count"/> sequences and steps until all of them decode.</summary>
    private Dictionary<long, Sequence> Decoding(Scheduler scheduler, int count)
    {
        var sequences = Enumerable.Range(0, count).Select(_ => NewSequence(8)).ToDictionary(s => s.Id);
        foreach (var s in sequences.Values) scheduler.Enqueue(s);
        while (sequences.Values.Any(s => s.Uncomputed > 1)) Complete(scheduler.Schedule(), sequences);
        Assert.All(sequences.Values, s => Assert.Equal(1, s.Uncomputed));
        return sequences;
    }

    [Fact]
    public void A_prompt_next_to_decoding_sequences_is_prefilled_in_chunks_of_the_cap()
    {
        var scheduler = NewScheduler(new EngineOptions { MaxBatchedTokens = 1024, PrefillChunkTokens = 32, PrefillTokensPerDecode = 2 });
        var sequences = Decoding(scheduler, 3);
        var prompt = NewSequence(80);
        sequences[prompt.Id] = prompt;
        scheduler.Enqueue(prompt);

        var chunks = new List<int>();
        while (prompt.ComputedTokens < prompt.PromptLength)
        {
            var step = scheduler.Schedule();
            Assert.Equal(3, step.Sequences.Count(s => s.Tokens == 1 && s.SequenceId != prompt.Id)); // every decode keeps its token
            chunks.Add(step.Sequences.Single(s => s.SequenceId == prompt.Id).Tokens);
            Complete(step, sequences);
        }
        Assert.Equal([32, 32, 16], chunks);
    }

    [Fact]
    public void Without_decoding_sequences_a_prompt_takes_the_whole_step_budget()
    {
        var scheduler = NewScheduler(new EngineOptions { MaxBatchedTokens = 64, PrefillChunkTokens = 16 });
        var prompt = NewSequence(100);
        scheduler.Enqueue(prompt);
        var step = scheduler.Schedule();
        Assert.Equal(64, step.TotalTokens);
    }

    [Fact]
    public void The_prefill_budget_grows_with_the_decode_batch_within_max_batched_tokens()
    {
        var options = new EngineOptions { MaxBatchedTokens = 100, PrefillChunkTokens = 8, PrefillTokensPerDecode = 2 };
        var scheduler = NewScheduler(options);
        Assert.Equal(8, scheduler.PrefillBudgetWhileDecoding(1));
        Assert.Equal(40, scheduler.PrefillBudgetWhileDecoding(20));

        var sequences = Decoding(scheduler, 20);
        var prompt = NewSequence(200);
        sequences[prompt.Id] = prompt;
        scheduler.Enqueue(prompt);
        var step = scheduler.Schedule();
        Assert.Equal(40, step.Sequences.Single(s => s.SequenceId == prompt.Id).Tokens);

        // 60 decoding sequences would allow 120 prompt tokens; the step holds 100 tokens in all.
        var crowded = NewScheduler(options);
        var many = Decoding(crowded, 60);
        var late = NewSequence(200);
        many[late.Id] = late;
        crowded.Enqueue(late);
        step = crowded.Schedule();
        Assert.Equal(40, step.Sequences.Single(s => s.SequenceId == late.Id).Tokens);
        Assert.Equal(100, step.TotalTokens);
    }
}
