using System.CommandLine;
using MoeServe.Training.Data;
using MoeServe.Training.Train;

// moeserve-train: build the data and tokenizer, then train the default model (issue: embedded trained model).
var root = new RootCommand("MoeServe training tools: data and tokenizer, then the MoE model")
{
    DataCommand.Create(),
    TrainCommand.Create(),
};
return root.Parse(args).Invoke();
