using OxyPlot;
using OxyPlot.Axes;
using OxyPlot.Series;

namespace MoeServe.Cli.Load;

/// <summary>Output tokens/s and inter-token p99 against concurrency, as an SVG a person can open.</summary>
public static class LoadPlot
{
    public static void WriteSvg(IReadOnlyList<LevelResult> levels, string path, string title)
    {
        var model = new PlotModel { Title = title, Background = OxyColors.White };
        model.Axes.Add(new LogarithmicAxis { Position = AxisPosition.Bottom, Title = "concurrent clients", Base = 2, MajorGridlineStyle = LineStyle.Dot });
        model.Axes.Add(new LinearAxis { Position = AxisPosition.Left, Title = "output tokens/s", Key = "tps", Minimum = 0 });
        model.Axes.Add(new LinearAxis { Position = AxisPosition.Right, Title = "inter-token latency p99 (ms)", Key = "itl", Minimum = 0 });
        var throughput = new LineSeries { Title = "tokens/s", YAxisKey = "tps", MarkerType = MarkerType.Circle, Color = OxyColors.SteelBlue };
        var latency = new LineSeries { Title = "ITL p99", YAxisKey = "itl", MarkerType = MarkerType.Square, Color = OxyColors.OrangeRed, LineStyle = LineStyle.Dash };
        foreach (var l in levels)
        {
            throughput.Points.Add(new DataPoint(l.Concurrency, l.OutputTokensPerSecond));
            latency.Points.Add(new DataPoint(l.Concurrency, l.InterTokenP99 * 1000));
        }
        model.Series.Add(throughput);
        model.Series.Add(latency);
        model.Legends.Add(new OxyPlot.Legends.Legend { LegendPosition = OxyPlot.Legends.LegendPosition.TopLeft });
        ReportFiles.WriteSvg(model, path, 800, 450);
    }
}
