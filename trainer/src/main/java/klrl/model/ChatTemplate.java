package klrl.model;

import com.hubspot.jinjava.Jinjava;
import com.hubspot.jinjava.JinjavaConfig;
import com.hubspot.jinjava.LegacyOverrides;
import com.hubspot.jinjava.interpret.RenderResult;
import com.hubspot.jinjava.interpret.TemplateError;
import com.hubspot.jinjava.lib.fn.ELFunctionDefinition;
import java.time.ZonedDateTime;
import java.time.format.DateTimeFormatter;
import java.util.ArrayList;
import java.util.HashMap;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import klrl.util.UserError;

/**
 * Renders tokenizer_config.json's chat_template as transformers' apply_chat_template does:
 * Jinja with trim_blocks and lstrip_blocks, {@code raise_exception} and {@code strftime_now}.
 *
 * <p>Jinjava is used with its Jinja-3 compatible overrides: strict whitespace control so {@code {{-}}
 * and {@code -}}} trim like Python Jinja, natural operator precedence, and Python-style printing.
 */
public final class ChatTemplate {
    private final String source;
    private final Map<String, Object> specials;
    private final Jinjava jinjava;

    /** One chat message: role and content, like the dicts transformers takes. */
    public record Message(String role, String content) {
        Map<String, Object> asMap() {
            Map<String, Object> m = new LinkedHashMap<>();
            m.put("role", role);
            m.put("content", content);
            return m;
        }
    }

    public ChatTemplate(String source, Map<String, Object> specialTokens) {
        this.source = source;
        this.specials = specialTokens;
        LegacyOverrides overrides = LegacyOverrides.newBuilder()
                .withParseWhitespaceControlStrictly(true)
                .withUseTrimmingForNotesAndExpressions(true)
                .withUseNaturalOperatorPrecedence(true)
                .withWhitespaceRequiredWithinTokens(false)
                .withUsePyishObjectMapper(true)
                .withKeepNullableLoopValues(true)
                .build();
        JinjavaConfig cfg = JinjavaConfig.newBuilder()
                .withTrimBlocks(true)
                .withLstripBlocks(true)
                .withFailOnUnknownTokens(false)
                .withLegacyOverrides(overrides)
                .build();
        this.jinjava = new Jinjava(cfg);
        jinjava.getGlobalContext().registerFunction(new ELFunctionDefinition("", "raise_exception",
                ChatTemplate.class, "raiseException", String.class));
        jinjava.getGlobalContext().registerFunction(new ELFunctionDefinition("", "strftime_now",
                ChatTemplate.class, "strftimeNow", String.class));
    }

    public String render(List<Message> messages, boolean addGenerationPrompt) {
        Map<String, Object> ctx = new HashMap<>(specials);
        List<Map<String, Object>> msgs = new ArrayList<>();
        messages.forEach(m -> msgs.add(m.asMap()));
        ctx.put("messages", msgs);
        ctx.put("add_generation_prompt", addGenerationPrompt);
        RAISED.remove();
        RenderResult r = jinjava.renderForResult(source, ctx);
        String raised = RAISED.get();
        RAISED.remove();
        if (raised != null) {
            throw new UserError("chat_template raised: " + raised);
        }
        for (TemplateError e : r.getErrors()) {
            if (e.getSeverity() == TemplateError.ErrorType.FATAL) {
                throw new UserError("chat_template: cannot render (" + e.getMessage() + ")");
            }
        }
        return r.getOutput();
    }

    /** Jinjava wraps exceptions from functions; the message travels back through this instead. */
    private static final ThreadLocal<String> RAISED = new ThreadLocal<>();

    public static String raiseException(String message) {
        RAISED.set(message);
        throw new UserError("chat_template raised: " + message);
    }

    /** Python strftime subset used by chat templates (%d %b %Y %m %B %H %M %S %j %A %a). */
    public static String strftimeNow(String fmt) {
        ZonedDateTime now = ZonedDateTime.now();
        StringBuilder sb = new StringBuilder();
        for (int i = 0; i < fmt.length(); i++) {
            char c = fmt.charAt(i);
            if (c != '%' || i + 1 == fmt.length()) {
                sb.append(c);
                continue;
            }
            char f = fmt.charAt(++i);
            String p = switch (f) {
                case 'd' -> "dd";
                case 'b' -> "MMM";
                case 'B' -> "MMMM";
                case 'Y' -> "yyyy";
                case 'm' -> "MM";
                case 'H' -> "HH";
                case 'M' -> "mm";
                case 'S' -> "ss";
                case 'j' -> "DDD";
                case 'A' -> "EEEE";
                case 'a' -> "EEE";
                case 'y' -> "yy";
                default -> null;
            };
            sb.append(p == null ? (f == '%' ? "%" : "%" + f)
                    : now.format(DateTimeFormatter.ofPattern(p, java.util.Locale.ENGLISH)));
        }
        return sb.toString();
    }
}
