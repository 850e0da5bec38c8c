"""Every command explains itself: ``--help``/``-h``, ``help``, ``version``, shell completion from the catalogue."""

import shlex
import shutil
import subprocess
import tempfile

from twisted.trial.unittest import TestCase

import pilotnet
from pilotnet.cli import catalogue, completion
from pilotnet.cli.args import Args
from tests.cli.support import PilotctlMixin


def example_argv(command):
    """The example's arguments after ``pilotctl`` (up to a shell operator or comment)."""
    words = []
    for word in shlex.split(command.example, comments=True)[1:]:
        if word in ("&&", "||", ";", "|", ">"):
            break
        words.append(word)
    return words


class HelpTests(PilotctlMixin, TestCase):
    def setUp(self):
        self.home = tempfile.mkdtemp(prefix="pilot-test-")
        self.addCleanup(shutil.rmtree, self.home, True)

    async def test_every_command_has_help_with_usage_flags_and_an_example(self):
        for command in catalogue.COMMANDS:
            words = command.name.split()
            for spelling in ("--help", "-h"):
                result = await self.pilotctl(*words, spelling)
                self.assertEqual((result.code, result.stderr), (0, ""), (command.name, result))
                self.assertTrue(result.stdout.startswith(f"usage: {command.usage}\n"), command.name)
                self.assertIn(f"example:\n  {command.example}\n", result.stdout)
                for spec in command.flag_specs:
                    self.assertIn(f"  {spec}", result.stdout, command.name)
            as_json = await self.pilotctl(*words, "--help", "--json")
            self.assertEqual(as_json.data["usage"], command.usage)
            self.assertEqual(set(as_json.data["flags"]), set(command.flag_specs))

    def test_every_example_is_a_valid_command_line(self):
        for command in catalogue.COMMANDS:
            found, rest = catalogue.find(example_argv(command))
            self.assertIs(found, command, command.example)
            args = Args([word for word in rest if word != "--json"])
            found.check(args)

    async def test_help_for_pilotctl_itself(self):
        for argv in (["-h"], ["--help"], ["help"]):
            result = await self.pilotctl(*argv)
            self.assertEqual(result.code, 0, argv)
            self.assertTrue(result.stdout.startswith("usage: pilotctl "), argv)
            self.assertIn("pilotctl <command> --help", result.stdout)
        ping = await self.pilotctl("help", "ping")
        self.assertTrue(ping.stdout.startswith("usage: pilotctl ping "))
        group = await self.pilotctl("help", "task", "submit")
        self.assertTrue(group.stdout.startswith("usage: pilotctl task submit "))
        unknown = await self.pilotctl("help", "frobnicate", "--json")
        self.assertEqual((unknown.code, unknown.error["code"]), (1, "invalid_argument"))

    async def test_help_for_each_group_of_commands(self):
        for group in catalogue.GROUPS:
            members = [command for command in catalogue.COMMANDS if command.name.startswith(group + " ")]
            for argv in ([group, "--help"], [group, "-h"], ["help", group]):
                result = await self.pilotctl(*argv)
                self.assertEqual((result.code, result.stderr), (0, ""), (argv, result))
                self.assertTrue(result.stdout.startswith(f"{catalogue.group_usage(group)}\n"), argv)
                for command in members:
                    self.assertIn(f"  {command.usage}\n      {command.description}\n", result.stdout)
                self.assertIn(f"example:\n  {members[0].example}\n", result.stdout)
            as_json = await self.pilotctl(group, "--help", "--json")
            self.assertEqual(set(as_json.data["commands"]), {command.usage for command in members})
        bare = await self.pilotctl("daemon", "--json")
        self.assertEqual((bare.code, bare.error["message"]), (1, "usage: pilotctl daemon start|stop|status"))

    def test_every_command_with_sub_commands_is_in_a_group(self):
        """Completion, help and dispatch know sub-commands through GROUPS."""
        for command in catalogue.COMMANDS:
            if " " in command.name:
                self.assertIn(command.name.split()[0], catalogue.GROUPS, command.name)

    async def test_version(self):
        result = await self.pilotctl("version", "--json")
        self.assertEqual(result.data, {"version": pilotnet.__version__})
        self.assertEqual((await self.pilotctl("version")).stdout, f"pilotctl {pilotnet.__version__} (pilotnet)\n")

    async def test_send_file_refuses_a_directory_by_name(self):
        result = await self.pilotctl("send-file", "5", self.home, "--json")
        self.assertEqual((result.code, result.error["code"]), (1, "invalid_argument"))
        self.assertIn("is a directory", result.error["message"])


class CompletionTests(PilotctlMixin, TestCase):
    def setUp(self):
        self.home = tempfile.mkdtemp(prefix="pilot-test-")
        self.addCleanup(shutil.rmtree, self.home, True)

    async def test_scripts_come_from_the_catalogue(self):
        for shell in ("bash", "zsh"):
            result = await self.pilotctl("completion", shell)
            self.assertEqual(result.code, 0)
            for command in catalogue.COMMANDS:
                self.assertIn(command.name.split()[-1], result.stdout, (shell, command.name))
        unknown = await self.pilotctl("completion", "fish", "--json")
        self.assertEqual(unknown.error["code"], "invalid_argument")

    def complete(self, *words):
        """What bash offers after ``pilotctl <words>`` (the last word is the one being completed)."""
        bash = shutil.which("bash")
        if bash is None:
            self.skipTest("bash is not installed")
        line = ["pilotctl", *words]
        script = (completion.bash() + f"COMP_WORDS=({' '.join(shlex.quote(w) for w in line)}); "
                  f"COMP_CWORD={len(line) - 1}; _pilotctl; printf '%s\\n' \"${{COMPREPLY[@]}}\"\n")
        done = subprocess.run([bash, "--norc", "-c", script], capture_output=True, text=True, check=True)
        return done.stdout.split()

    def test_bash_completes_commands_subcommands_and_flags(self):
        self.assertEqual(self.complete("pi"), ["ping"])
        self.assertEqual(sorted(self.complete("task", "s")), ["send-results", "submit"])
        self.assertEqual(self.complete("ping", "--c"), ["--count"])
        self.assertIn("--foreground", self.complete("daemon", "start", "--f"))

    def test_bash_completes_every_sub_command_of_every_group(self):
        for group in catalogue.GROUPS:
            expected = sorted(c.name.split(" ", 1)[1] for c in catalogue.COMMANDS if c.name.startswith(group + " "))
            self.assertEqual(sorted(self.complete(group, "")), expected, group)

    def complete_zsh(self, *words):
        """What the zsh function offers after ``pilotctl <words>``: completion's builtins replaced by printers."""
        zsh = shutil.which("zsh")
        if zsh is None:
            self.skipTest("zsh is not installed (tools/run-tests installs it as root)")
        line = ["pilotctl", *words]
        script = ("compdef() { :; }\n"
                  "_describe() { print -rl -- \"${(@P)2}\"; }\n"  # the items offered, as name:description
                  "compadd() { shift; print -rl -- \"$@\"; }\n"
                  "_files() { print -r -- '<files>'; }\n"
                  + completion.zsh()
                  + f"words=({' '.join(shlex.quote(w) for w in line)}); CURRENT={len(line)}; "
                  + f"PREFIX={shlex.quote(line[-1])}; _pilotctl\n")
        done = subprocess.run([zsh, "-f", "-c", script], capture_output=True, text=True, check=True)
        return [item.split(":", 1)[0] for item in done.stdout.splitlines()]

    def test_zsh_completes_commands_sub_commands_and_flags(self):
        self.assertEqual(self.complete_zsh(""), sorted({c.name.split()[0] for c in catalogue.COMMANDS}))
        for group in catalogue.GROUPS:
            expected = [c.name.split(" ", 1)[1] for c in catalogue.COMMANDS if c.name.startswith(group + " ")]
            self.assertEqual(self.complete_zsh(group, ""), expected, group)
        self.assertEqual(self.complete_zsh("ping", "--c"), ["--count", "--timeout", "--json", "--help", "--home"])
        self.assertIn("--join-rule", self.complete_zsh("network", "create", "--j"))
        self.assertEqual(self.complete_zsh("send-file", "agent-b", "rep"), ["<files>"])
        zsh = shutil.which("zsh")
        check = subprocess.run([zsh, "-n"], input=completion.zsh(), capture_output=True, text=True)
        self.assertEqual((check.returncode, check.stderr), (0, ""))

    def test_zsh_script_names_every_flag(self):
        script = completion.zsh()
        self.assertTrue(script.startswith("#compdef pilotctl\n"))
        for command in catalogue.COMMANDS:
            for flag in command.flags:
                self.assertIn(f"--{flag}", script)
