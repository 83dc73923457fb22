// JSON Schemas of Rocket.Chat's own types, to validate importops' answers at run time.
//
// - IMeApiUser, IUser, IImport, IPermission: the schemas @rocket.chat/core-typings ships
//   (`dist/Ajv.js`, `schemas.components.schemas`, generated from the TypeScript types by typia);
//   they are the ones Rocket.Chat's routes register to validate their own answers.
// - IImportProgress is not in that collection: ts-json-schema-generator makes its schema from
//   core-typings' TypeScript type (types.ts, `ImportProgress`) before the checks run, into
//   $CLIENTS_WORK/import-progress.schema.json.
// - The 400, 401 and 403 bodies: the schemas of @rocket.chat/rest-typings' `dist/v1/Ajv.js`
//   (BadRequestErrorResponseSchema, UnauthorizedErrorResponseSchema,
//   ForbiddenErrorResponseSchema), copied here because that file cannot be loaded by Node as
//   published (ES module syntax in a CommonJS package).
import { readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { join } from 'node:path';

import Ajv from 'ajv';
import addFormats from 'ajv-formats';

const require = createRequire(import.meta.url);
const { schemas } = require('@rocket.chat/core-typings/dist/Ajv.js');

const ajv = new Ajv({ strict: false, allErrors: true });
addFormats(ajv);
ajv.addSchema({ $id: 'core-typings', components: schemas.components });

const core = (name) => ({ $ref: `core-typings#/components/schemas/${name}` });

const progressSchema = JSON.parse(
  readFileSync(join(process.env.CLIENTS_WORK, 'import-progress.schema.json'), 'utf8'),
);

const errorBody = (extra) => ({
  type: 'object',
  properties: {
    success: { type: 'boolean', enum: [false] },
    error: { type: 'string' },
    errorType: { type: 'string' },
    ...extra,
  },
  required: ['success'],
  additionalProperties: false,
});

const success = { type: 'object', properties: { success: { enum: [true] } }, required: ['success'] };

const validators = {
  IMeApiUser: ajv.compile(core('IMeApiUser')),
  // rest-typings' MeApiSuccessResponse: IMeApiUser & { success: true }
  MeApiSuccessResponse: ajv.compile({ allOf: [core('IMeApiUser'), success] }),
  IUser: ajv.compile(core('IUser')),
  IImport: ajv.compile(core('IImport')),
  IPermission: ajv.compile(core('IPermission')),
  // core-typings' ImportStatus: { state: 'none' } | { state: …, operation: IImport }
  ImportStatus: ajv.compile({
    oneOf: [
      { type: 'object', properties: { state: { enum: ['none'] } }, required: ['state'], not: { required: ['operation'] } },
      {
        type: 'object',
        properties: {
          state: { enum: ['new', 'loading', 'ready', 'importing', 'done', 'error', 'canceled'] },
          operation: core('IImport'),
        },
        required: ['state', 'operation'],
      },
    ],
  }),
  IImportProgress: ajv.compile(progressSchema),
  BadRequestErrorResponse: ajv.compile(
    errorBody({ stack: { type: 'string' }, details: { anyOf: [{ type: 'string' }, { type: 'object' }, { type: 'array' }] } }),
  ),
  UnauthorizedErrorResponse: ajv.compile(errorBody({ status: { type: 'string' }, message: { type: 'string' } })),
  ForbiddenErrorResponse: ajv.compile(errorBody({ status: { type: 'string' }, message: { type: 'string' } })),
};

/** Throws unless `value` conforms to the named type; the message lists every violation. */
export function conforms(type, value, what) {
  const validate = validators[type];
  if (!validate) throw new Error(`no schema for ${type}`);
  if (!validate(value)) {
    const errors = validate.errors
      .map((e) => `${e.instancePath || '(root)'} ${e.message}${e.params ? ` ${JSON.stringify(e.params)}` : ''}`)
      .join('; ');
    throw new Error(`${what} does not conform to ${type}: ${errors}\n  value: ${JSON.stringify(value).slice(0, 1500)}`);
  }
}

/** The core-typings schemas, for the Python checks (validated there with jsonschema). */
export function coreComponents() {
  return schemas.components;
}
