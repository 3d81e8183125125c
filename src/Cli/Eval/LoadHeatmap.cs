using System.Globalization;
using System.Text;
using OxyPlot;
using OxyPlot.Axes;
using OxyPlot.Series;

namespace MoeServe.Cli.Eval;

/// <summary>
/// Layer x expert heatmaps of where each layer's token-expert pairs went, one panel per domain (its
/// single-domain batches) plus one for the mixed batches, all on the same colour scale, in one SVG.
/// OxyPlot draws one plot per model, so each panel is its own PlotModel exported as an SVG fragment
/// and the fragments are laid out in a grid inside one outer SVG document.
/// </summary>
public static partial class LoadHeatmap
{
    private const int Columns = 3;

    public static void WriteSvg(EvalResult result, string path)
    {
        var groups = result.ExpertLoad.Groups.Where(g => g.Name != Evaluator.SingleGroup)
            .OrderBy(g => g.Name == Evaluator.MixedGroup ? 1 : 0).ToList(); // domains first, mixed last
        int layers = result.Model.Layers, experts = result.Model.Experts;
        // Cells stay readable from 8 to 64 experts and 2 to 32 layers.
        double width = Math.Clamp(150 + 34.0 * experts, 380, 1000);
        double height = Math.Clamp(110 + 30.0 * layers, 220, 900);
        double max = 100 * groups.SelectMany(g => g.ExpertShare).SelectMany(row => row).DefaultIfEmpty(0).Max();
        int columns = Math.Min(Columns, Math.Max(1, groups.Count));
        int rows = (groups.Count + columns - 1) / columns;
        const double header = 40;

        var svg = new StringBuilder();
        svg.Append(string.Create(CultureInfo.InvariantCulture,
            $"<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{columns * width}\" height=\"{header + rows * height}\">\n"));
        svg.Append(string.Create(CultureInfo.InvariantCulture,
            $"<rect width=\"100%\" height=\"100%\" fill=\"white\"/>\n<text x=\"12\" y=\"26\" font-family=\"Arial\" font-size=\"16\">" +
            $"{Escape(Path.GetFileName(Path.TrimEndingDirectorySeparator(result.Model.Dir)))}, policy {Escape(EvalReport.PolicyLabel(result))}: share of each layer's token-expert pairs per expert, % " +
            $"(uniform = {100.0 / experts:F1}%)</text>\n"));
        for (int i = 0; i < groups.Count; i++)
        {
            var model = Panel(groups[i], layers, experts, max);
            string fragment = Embeddable(SvgExporter.ExportToString(model, width, height, isDocument: false), $"p{i}");
            svg.Append(string.Create(CultureInfo.InvariantCulture, $"<g transform=\"translate({i % columns * width},{header + i / columns * height})\">\n"));
            svg.Append(fragment).Append("\n</g>\n");
        }
        svg.Append("</svg>\n");
        ReportFiles.Save(path, svg.ToString());
    }

    /// <summary>One group's heatmap: x = expert, y = layer (0 at the top, like the tables), colour = % of the layer's pairs.</summary>
    private static PlotModel Panel(LoadGroup group, int layers, int experts, double maxPercent)
    {
        string title = group.Name == Evaluator.MixedGroup ? "mixed batches (all domains)" : EvalReport.GroupLabel(group.Name);
        var model = new PlotModel
        {
            Title = title,
            Subtitle = string.Create(CultureInfo.InvariantCulture, $"{group.Batches} steps, I_agg {group.ImbalanceAgg:F3}"),
            Background = OxyColors.White,
        };
        model.Axes.Add(new LinearAxis { Position = AxisPosition.Bottom, Title = "expert", Minimum = -0.5, Maximum = experts - 0.5, MajorStep = experts <= 16 ? 1 : 8, MinorStep = 1 });
        model.Axes.Add(new LinearAxis { Position = AxisPosition.Left, Title = "layer", Minimum = -0.5, Maximum = layers - 0.5, StartPosition = 1, EndPosition = 0, MajorStep = layers <= 16 ? 1 : 4, MinorStep = 1 });
        model.Axes.Add(new LinearColorAxis { Position = AxisPosition.Right, Palette = OxyPalettes.Viridis(200), Minimum = 0, Maximum = Math.Max(maxPercent, 1e-9), Title = "%" });
        var data = new double[experts, layers]; // HeatMapSeries wants [x, y]
        for (int l = 0; l < layers; l++)
            for (int e = 0; e < experts; e++) data[e, l] = 100 * group.ExpertShare[l][e];
        model.Series.Add(new HeatMapSeries
        {
            X0 = 0, X1 = experts - 1, Y0 = 0, Y1 = layers - 1,
            Data = data,
            CoordinateDefinition = HeatMapCoordinateDefinition.Center,
            RenderMethod = HeatMapRenderMethod.Rectangles, // vector cells: crisp at any zoom
            // Percent labels in the cells while they are wide enough to hold them.
            LabelFormatString = experts <= 16 ? "0.0" : null,
            LabelFontSize = experts <= 16 ? 0.3 : 0,
        });
        return model;
    }

    /// <summary>
    /// Makes an exported panel valid inside another SVG: OxyPlot writes an XML declaration even for a
    /// fragment (illegal past a document's start), and every panel numbers its clip paths from 1, so the
    /// ids get a per-panel prefix to stay unique.
    /// </summary>
    private static string Embeddable(string fragment, string prefix) =>
        XmlDeclaration().Replace(fragment, "")
            .Replace("id=\"clipPath", $"id=\"{prefix}clipPath", StringComparison.Ordinal)
            .Replace("url(#clipPath", $"url(#{prefix}clipPath", StringComparison.Ordinal);

    [System.Text.RegularExpressions.GeneratedRegex(@"<\?xml[^>]*\?>\s*")]
    private static partial System.Text.RegularExpressions.Regex XmlDeclaration();

    private static string Escape(string text) => System.Security.SecurityElement.Escape(text) ?? "";
}
