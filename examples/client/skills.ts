// Skills (the MCP skills extension): list what a server offers, then load one when it is needed, verified.
import { Client, SkillVerificationError } from 'gatehouse/client';

await using client = new Client('https://mcp.example.com/mcp', { auth: 'oauth' });

const skills = await client.listSkills(); // reads no skill file
const pdf = skills.find((skill) => skill.frontmatter.name === 'pdf-processing');
if (pdf) {
  try {
    const manifest = await client.readSkill(pdf); // SKILL.md, checked against the entry
    console.log(manifest.frontmatter, manifest.body);
    const forms = await client.readSkill(pdf, 'references/FORMS.md');
    console.log(forms.text);
  } catch (error) {
    if (!(error instanceof SkillVerificationError)) throw error;
    console.error(`Not loading ${pdf.uri}: ${error.message}`); // reason: 'size' | 'digest' | 'frontmatter' | 'unlisted'
  }
}
