using System.CommandLine;
using MoeServe.Cli.Bench;

// moeserve-cli: one subcommand per job. Each subcommand builds its own System.CommandLine Command.
var root = new RootCommand("MoeServe command-line tools")
{
    BenchCommand.Create(),
    MoeServe.Cli.Load.LoadCommand.Create(),
    MoeServe.Cli.Eval.EvalCommand.Create(),
    MoeServe.Cli.Compare.CompareCommand.Create(),
    MoeServe.Cli.Straggler.StragglerCommand.Create(),
};
return root.Parse(args).Invoke();
