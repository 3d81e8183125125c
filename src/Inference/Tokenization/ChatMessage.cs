namespace MoeServe.Inference.Tokenization;

/// <summary>One turn of a conversation: role is system, user or assistant.</summary>
public sealed record ChatMessage(string Role, string Content);

/// <summary>A conversation the chat template cannot express (the API answers 400).</summary>
public sealed class ChatTemplateException(string message) : Exception(message);
