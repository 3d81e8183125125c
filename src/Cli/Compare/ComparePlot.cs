using OxyPlot;
using OxyPlot.Axes;
using OxyPlot.Legends;
using OxyPlot.Series;

namespace MoeServe.Cli.Compare;

/// <summary>
/// Balance against quality, one labelled point per configuration: x = I_agg (left is better balanced),
/// y = held-out perplexity (down is better), both of the same mixed batches. The trade-off reads at a
/// glance: a policy worth having moves left without moving up.
/// </summary>
public static class ComparePlot
{
    public static void WriteSvg(CompareReport report, string path)
    {
        var model = new PlotModel
        {
            Title = $"{Path.GetFileName(Path.TrimEndingDirectorySeparator(report.Model.Dir))}: balance vs quality",
            Subtitle = "mixed-domain batches of the same held-out documents",
            Background = OxyColors.White,
        };
        // Padding keeps the labels of the outermost points inside the plot.
        model.Axes.Add(new LinearAxis { Position = AxisPosition.Bottom, Title = "I_agg (max/mean expert load, mean over layers and steps)", MinimumPadding = 0.1, MaximumPadding = 0.25, MajorGridlineStyle = LineStyle.Dot });
        model.Axes.Add(new LinearAxis { Position = AxisPosition.Left, Title = "held-out perplexity", MinimumPadding = 0.1, MaximumPadding = 0.1, MajorGridlineStyle = LineStyle.Dot });
        var colors = OxyPalettes.HueDistinct(Math.Max(1, report.Rows.Count)).Colors;
        for (int i = 0; i < report.Rows.Count; i++)
        {
            var row = report.Rows[i];
            if (double.IsNaN(row.ImbalanceAgg) || double.IsNaN(row.Perplexity)) continue;
            var series = new ScatterSeries
            {
                Title = row.Name,
                MarkerType = MarkerType.Circle,
                MarkerSize = 5,
                MarkerFill = colors[i],
                // The label is literal text: OxyPlot treats braces as format placeholders.
                LabelFormatString = row.Name.Replace("{", "{{").Replace("}", "}}"),
                LabelMargin = 4,
            };
            series.Points.Add(new ScatterPoint(row.ImbalanceAgg, row.Perplexity));
            model.Series.Add(series);
        }
        model.Legends.Add(new Legend { LegendPosition = LegendPosition.RightTop, LegendPlacement = LegendPlacement.Outside });
        ReportFiles.WriteSvg(model, path, 900, 520);
    }
}
