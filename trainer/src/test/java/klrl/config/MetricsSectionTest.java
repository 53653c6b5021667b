package klrl.config;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.nio.file.Files;
import java.nio.file.Path;
import java.util.List;
import java.util.Map;
import klrl.util.UserError;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/** The metrics section (metrics.names) through the loader: YAML, --set, the saved config.yaml, mistakes. */
class MetricsSectionTest {
    @TempDir Path tmp;

    @Test
    void namesAreKlrlUnlessAFileOrSetSaysVerlOrTrl() throws Exception {
        assertEquals("klrl", ConfigLoader.load(null, Map.of()).metrics().names());
        assertEquals("klrl", ConfigLoader.load("tiny-cpu", Map.of()).metrics().names());
        Path f = tmp.resolve("c.yaml");
        Files.writeString(f, "metrics:\n  names: verl\n");
        assertEquals("verl", ConfigLoader.load(f.toString(), Map.of()).metrics().names());
        TrainConfig trl = ConfigLoader.load(f.toString(), Map.of(), List.of("metrics.names=trl"));
        assertEquals("trl", trl.metrics().names());
        // an empty section is the defaults
        Files.writeString(f, "metrics:\n");
        assertEquals("klrl", ConfigLoader.load(f.toString(), Map.of()).metrics().names());
        // the config.yaml a run saves holds it and reads back the same
        String saved = ConfigLoader.toYaml(trl);
        assertTrue(saved.contains("metrics:\n  names: \"trl\"") || saved.contains("metrics:\n  names: trl"), saved);
        Path again = tmp.resolve("config.yaml");
        Files.writeString(again, saved);
        assertEquals(trl, ConfigLoader.load(again.toString(), Map.of()));
    }

    @Test
    void aWrongNameIsOneLineNamingTheKeyAndItsValues() throws Exception {
        UserError e = assertThrows(UserError.class, () -> ConfigLoader.load(null, Map.of(), List.of("metrics.names=wandb")));
        assertTrue(e.getMessage().contains("metrics.names must be one of klrl, verl, trl; got 'wandb'"), e.getMessage());
        assertFalse(e.getMessage().contains("\n"), e.getMessage());
        Path f = tmp.resolve("c.yaml");
        Files.writeString(f, "metrics: {names: VERL}\n");
        e = assertThrows(UserError.class, () -> ConfigLoader.load(f.toString(), Map.of()));
        assertTrue(e.getMessage().startsWith(f + ": metrics.names must be one of klrl, verl, trl; got 'VERL'"), e.getMessage());
        Files.writeString(f, "metrics: {name: verl}\n");
        e = assertThrows(UserError.class, () -> ConfigLoader.load(f.toString(), Map.of()));
        assertTrue(e.getMessage().contains("unknown key 'metrics.name'") && e.getMessage().contains("did you mean 'metrics.names'?"),
                e.getMessage());
        Files.writeString(f, "metrics: verl\n");
        e = assertThrows(UserError.class, () -> ConfigLoader.load(f.toString(), Map.of()));
        assertTrue(e.getMessage().contains("'metrics' is a section"), e.getMessage());
    }
}
