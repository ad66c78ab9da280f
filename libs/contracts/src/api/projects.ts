/** Project routes' bodies (seed `CreateProjectRequest`, `ProjectInfo`, `ListProjectsResponse`). */
import { Type } from "typebox";
import { ProjectId } from "./common.ts";

const DeploymentTarget = Type.Object(
  {
    port: Type.Optional(Type.Integer({ minimum: 1024, maximum: 65535 })),
    url: Type.Optional(Type.String({ maxLength: 2048 })),
  },
  { additionalProperties: false },
);
export const Deployment = Type.Object(
  { dev: Type.Optional(DeploymentTarget), prod: Type.Optional(DeploymentTarget) },
  { additionalProperties: false },
);

export const CreateProjectRequest = Type.Object(
  { name: Type.String({ minLength: 1, maxLength: 200 }), deployment: Type.Optional(Deployment) },
  { additionalProperties: false },
);

export const ProjectInfo = Type.Object({
  id: Type.String(),
  name: Type.String(),
  projectDir: Type.String(),
  createdAt: Type.String(),
  deployment: Type.Optional(Deployment),
});

export const ListProjectsResponse = Type.Object({ projects: Type.Array(ProjectInfo) });

export const ProjectIdParams = Type.Object({ id: ProjectId }, { additionalProperties: false });
