package klrl.cli;

import com.fasterxml.jackson.databind.JsonNode;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import java.util.concurrent.Callable;
import klrl.model.ChatTemplate;
import klrl.model.Tokenizer;
import klrl.util.Json;
import klrl.util.UserError;
import picocli.CommandLine.Command;
import picocli.CommandLine.Option;

@Command(name = "template", mixinStandardHelpOptions = true,
        description = "Render messages with the model's chat template, as transformers' apply_chat_template does.")
public final class TemplateCommand implements Callable<Integer> {
    @Option(names = "--model", required = true) Path model;
    @Option(names = "--messages", required = true, description = "JSON list of {\"role\",\"content\"}") Path messages;
    @Option(names = "--no-generation-prompt", description = "omit the assistant header at the end") boolean noGen;

    @Override
    public Integer call() {
        List<ChatTemplate.Message> msgs = readMessages(messages);
        try (Tokenizer tok = Tokenizer.load(model)) {
            System.out.print(tok.applyChatTemplate(msgs, !noGen));
            System.out.flush();
        }
        return 0;
    }

    static List<ChatTemplate.Message> readMessages(Path file) {
        JsonNode root = Json.read(file);
        if (!root.isArray()) {
            throw new UserError(file + ": expected a JSON list of {\"role\",\"content\"} objects");
        }
        List<ChatTemplate.Message> out = new ArrayList<>();
        for (int i = 0; i < root.size(); i++) {
            JsonNode m = root.get(i);
            if (!m.path("role").isTextual() || !m.path("content").isTextual()) {
                throw new UserError(file + ": message " + i + " needs string fields 'role' and 'content'");
            }
            out.add(new ChatTemplate.Message(m.get("role").asText(), m.get("content").asText()));
        }
        return out;
    }
}
