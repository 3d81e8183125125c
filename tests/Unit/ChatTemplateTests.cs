using MoeServe.Inference.Tokenization;

namespace MoeServe.Unit.Tests;

public class ChatTemplateTests
{
    [Fact]
    public void ChatMl_renders_each_turn_and_the_assistant_opener()
    {
        var text = new ChatMlTemplate().Render([new("system", "Be brief."), new("user", "Hi")]);
        Assert.Equal("<|im_start|>system\nBe brief.<|im_end|>\n<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n", text);
    }

    [Fact]
    public void Inst_folds_the_system_prompt_into_the_first_user_turn()
    {
        var t = new InstTemplate("<s>", "</s>");
        Assert.Equal("<s>[INST] Be brief.\n\nHi [/INST]", t.Render([new("system", "Be brief."), new("user", "Hi")]));
        Assert.Equal("<s>[INST] Hi [/INST]Hello</s>[INST] More [/INST]",
            t.Render([new("user", "Hi"), new("assistant", "Hello"), new("user", "More")]));
    }

    [Fact]
    public void Inst_rejects_roles_that_do_not_alternate()
    {
        var t = new InstTemplate("<s>", "</s>");
        Assert.Throws<ChatTemplateException>(() => t.Render([new("user", "a"), new("user", "b")]));
        Assert.Throws<ChatTemplateException>(() => t.Render([new("assistant", "a")]));
    }

    [Theory]
    [InlineData("{% for m in messages %}<|im_start|>{{ m.role }}{% endfor %}", "chatml")]
    [InlineData("{{ bos_token }}{% if m.role == 'user' %}[INST] {{ m.content }} [/INST]{% endif %}", "inst")]
    [InlineData("{% for m in messages %}<|user|>\n{{ m.content }}{% endfor %}", "tulu")]
    public void Family_is_detected_from_the_checkpoint_template(string template, string expected) =>
        Assert.Equal(expected, ChatTemplate.Detect(template, [], "olmoe", "<s>", "</s>").Name);

    [Fact]
    public void Without_a_template_the_special_tokens_decide() =>
        Assert.Equal("chatml", ChatTemplate.Detect(null, ["<|im_start|>", "<|im_end|>"], "mixtral", null, null).Name);
}
