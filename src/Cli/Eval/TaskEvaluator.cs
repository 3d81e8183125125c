using System.Text;
using System.Text.RegularExpressions;
using MoeServe.Inference.Engine;
using MoeServe.Inference.Sampling;
using MoeServe.Routing;

namespace MoeServe.Cli.Eval;

/// <summary>One item's greedy reply as the engine streamed it.</summary>
public sealed record TaskReply(TaskItem Item, string Text, int Tokens, string FinishReason);

/// <summary>
/// Exact-match accuracy through the server's own path: the chat template renders the messages, the
/// prompt is encoded without BOS (as /v1/chat/completions does), and <see cref="InferenceEngine"/>
/// generates greedily until EOS or the token limit, batching the family's items as it would concurrent
/// clients. The reply, trimmed, must equal the answer, trimmed.
/// </summary>
public sealed partial class TaskEvaluator(InferenceEngine engine, RoutingPolicy policy, double capacityFactor, int maxNewTokens)
{
    /// <summary>Generates a reply to every item; they run concurrently, in one engine.</summary>
    public IReadOnlyList<TaskReply> Generate(IReadOnlyList<TaskItem> items)
    {
        var tokenizer = engine.Tokenizer;
        var runs = items.Select(item =>
        {
            int[] prompt = tokenizer.Encode(tokenizer.ChatTemplate.Render(item.Messages), addBos: false);
            var request = new GenerationRequest
            {
                PromptIds = prompt,
                Sampling = new SamplingParameters { Temperature = 0 },
                MaxTokens = maxNewTokens,
                Policy = policy,
                CapacityFactor = capacityFactor,
            };
            return Collect(item, engine.Submit(request, CancellationToken.None));
        }).ToArray();
        return Task.WhenAll(runs).GetAwaiter().GetResult();
    }

    private static async Task<TaskReply> Collect(TaskItem item, System.Threading.Channels.ChannelReader<SequenceEvent> events)
    {
        var text = new StringBuilder();
        int tokens = 0;
        string finish = "";
        await foreach (var e in events.ReadAllAsync())
        {
            if (e.Token is not null) tokens++;
            text.Append(e.TextDelta);
            if (e.FinishReason is not null) finish = e.FinishReason;
        }
        if (finish == "error") throw new InvalidOperationException("generation failed in the engine (see its log)");
        return new TaskReply(item, text.ToString(), tokens, finish);
    }

    public static bool IsCorrect(TaskReply reply) => string.Equals(reply.Text.Trim(), reply.Item.Answer.Trim(), StringComparison.Ordinal);

    /// <summary>
    /// The trivial baseline: always reply with the family's most frequent answer. Taken from the
    /// assistant turns of the family's training conversations when there are any (a guesser that knows
    /// only the training answers), otherwise from the items themselves (an upper bound for such a guesser).
    /// For open answers (arithmetic) this is near 0; for yes/no it is the majority rate.
    /// </summary>
    /// <returns>The answer, where it came from ("train" or "items"), and the share of items it gets right.</returns>
    public static (string Answer, string Source, double Accuracy) MajorityBaseline(IReadOnlyList<TaskItem> items, IEnumerable<string>? trainTexts)
    {
        var trainAnswers = trainTexts?.SelectMany(t => AssistantTurn().Matches(t).Select(m => m.Groups[1].Value.Trim())).ToList() ?? [];
        string source = trainAnswers.Count > 0 ? "train" : "items";
        var pool = trainAnswers.Count > 0 ? trainAnswers : items.Select(i => i.Answer.Trim()).ToList();
        if (pool.Count == 0) return ("", source, 0);
        // Ties go to the ordinally smallest answer, so the baseline is deterministic.
        string answer = pool.GroupBy(a => a, StringComparer.Ordinal).OrderByDescending(g => g.Count()).ThenBy(g => g.Key, StringComparer.Ordinal).First().Key;
        double accuracy = items.Count == 0 ? 0 : items.Count(i => i.Answer.Trim() == answer) / (double)items.Count;
        return (answer, source, accuracy);
    }

    /// <summary>ChatML assistant turn: its content is group 1.</summary>
    [GeneratedRegex(@"<\|im_start\|>assistant\n(.*?)<\|im_end\|>", RegexOptions.Singleline)]
    private static partial Regex AssistantTurn();
}
