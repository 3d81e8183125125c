using System.Diagnostics;
using MoeServe.Cli.Eval;
using MoeServe.Inference.Checkpoint;
using MoeServe.Routing;

namespace MoeServe.Cli.Compare;

/// <summary>
/// Runs every configuration of <see cref="CompareConfigurations"/> through the evaluator with one set of
/// settings (same model, documents, batches, task items), so that the rows differ only in routing, then
/// times the router of each configuration in this same process.
/// </summary>
/// <param name="settings">Everything but the policy, capacity factor and routing knobs, which each configuration sets.</param>
/// <param name="routingCalls">Timed <see cref="LayerRouter.Route"/> calls per configuration and batch size.</param>
public sealed class CompareRunner(EvalSettings settings, int routingCalls)
{
    public CompareReport Run()
    {
        long start = Stopwatch.GetTimestamp();
        var log = settings.Log ?? (_ => { });
        var config = ModelConfig.Load(settings.ModelDir);
        var configurations = CompareConfigurations.For(config.ExpertsPerToken);

        var evaluations = new List<EvalResult>();
        foreach (var c in configurations)
        {
            log($"[{evaluations.Count + 1}/{configurations.Count}] {c.Name} ({c.Settings}) ...");
            evaluations.Add(new Evaluator().Evaluate(settings with { Policy = c.Policy, CapacityFactor = c.CapacityFactor, Routing = c.Routing }));
        }
        var vanilla = evaluations[0]; // CompareConfigurations puts vanilla first

        log($"timing LayerRouter.Route, {routingCalls} calls per configuration and size ...");
        using var timer = new RoutingTimer(new GateSemantics(config.ExpertsPerToken, config.NumExperts, config.RenormalizeTopK), routingCalls);
        var rows = configurations.Select((c, i) => CompareRows.From(c, evaluations[i], vanilla) with { Timing = timer.Measure(c) }).ToList();
        rows = CompareRatios.Apply(rows, rows[0]);

        return new CompareReport
        {
            Model = vanilla.Model,
            DataDir = vanilla.DataDir,
            MaxDocs = vanilla.MaxDocs,
            BatchDocs = vanilla.BatchDocs,
            DeviceCounts = settings.DeviceCounts,
            Documents = vanilla.Perplexity.Select(p => new NamedValue(p.Domain, p.Documents)).ToList(),
            TaskItems = vanilla.Tasks.Select(t => new NamedValue(t.Family, t.Items)).ToList(),
            Rows = rows,
            RoutingCalls = timer.Calls,
            RoutingInputs = timer.Inputs,
            Seconds = Stopwatch.GetElapsedTime(start).TotalSeconds,
            // Every run adds the same notes (tokenizer mismatch, ...): once is enough.
            Notes = evaluations.SelectMany(e => e.Notes).Distinct().ToList(),
            Evaluations = evaluations,
        };
    }
}
