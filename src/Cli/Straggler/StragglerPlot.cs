using OxyPlot;
using OxyPlot.Axes;
using OxyPlot.Legends;
using OxyPlot.Series;

namespace MoeServe.Cli.Straggler;

/// <summary>
/// Speedup over vanilla against the number of devices, one colour per policy and placement: solid lines are
/// the modelled latency from measured device times, dashed lines the synthetic cost model (busiest device's
/// pairs). Above 1 a policy shortens the layer; the gap between the two lines is what this CPU's fixed
/// per-call costs take away from the pair counts.
/// </summary>
public static class StragglerPlot
{
    public static void WriteSvg(StragglerReport report, string path)
    {
        var model = new PlotModel
        {
            Title = $"{Path.GetFileName(Path.TrimEndingDirectorySeparator(report.ModelDir))}: expert-parallel speedup over vanilla",
            Subtitle = $"mixed-domain steps of T = {report.BatchTokens}; solid: modelled from measured device times, dashed [cost]: cost model (busiest device's pairs)",
            Background = OxyColors.White,
        };
        var devices = report.Rows.Select(r => r.Devices).Distinct().Order().ToList();
        model.Axes.Add(new LinearAxis { Position = AxisPosition.Bottom, Title = "devices", Minimum = devices.Min() - 0.5, Maximum = devices.Max() + 0.5, MajorStep = 1, MajorGridlineStyle = LineStyle.Dot });
        model.Axes.Add(new LinearAxis { Position = AxisPosition.Left, Title = "speedup over vanilla (x)", MinimumPadding = 0.1, MaximumPadding = 0.1, MajorGridlineStyle = LineStyle.Dot });
        var keys = report.Rows.Select(r => (r.Placement, r.Policy)).Distinct().Where(k => !(k.Placement == "contiguous" && k.Policy == StragglerConfiguration.VanillaName)).ToList();
        var colors = OxyPalettes.HueDistinct(Math.Max(1, keys.Count)).Colors;
        for (int i = 0; i < keys.Count; i++)
        {
            var rows = report.Rows.Where(r => r.Placement == keys[i].Placement && r.Policy == keys[i].Policy).OrderBy(r => r.Devices).ToList();
            string name = keys[i].Placement == "contiguous" ? keys[i].Policy : $"{keys[i].Policy}, {keys[i].Placement}";
            var modelled = new LineSeries { Title = name, Color = colors[i], MarkerType = MarkerType.Circle, MarkerFill = colors[i] };
            var cost = new LineSeries { Title = $"{name} [cost]", Color = colors[i], LineStyle = LineStyle.Dash, MarkerType = MarkerType.Square, MarkerFill = colors[i] };
            foreach (var r in rows)
            {
                modelled.Points.Add(new DataPoint(r.Devices, r.ModelledSpeedup));
                cost.Points.Add(new DataPoint(r.Devices, r.CostModelSpeedup));
            }
            model.Series.Add(modelled);
            model.Series.Add(cost);
        }
        model.Legends.Add(new Legend { LegendPosition = LegendPosition.RightTop, LegendPlacement = LegendPlacement.Outside, LegendFontSize = 10 });
        ReportFiles.WriteSvg(model, path, 1250, 600); // room for the outside legend's long labels
    }
}
